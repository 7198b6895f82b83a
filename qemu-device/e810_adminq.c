/*
 * QEMU Intel E810 ("ice") Ethernet controller: admin queue engine
 *
 * The ATQ (driver -> firmware) is processed synchronously when the driver
 * writes PF_FW_ATQT: every descriptor from the head to the new tail is
 * read from guest memory, its indirect buffer (flag BUF) fetched, the
 * opcode dispatched through e810_aq_handlers[], and the descriptor (and
 * buffer) written back with DD|CMP (+ERR) before PF_FW_ATQH advances.
 * The driver polls ATQH, not DD (ice_sq_done()).
 *
 * The ARQ (firmware -> driver) carries events (link status).  The driver
 * posts buffers by moving PF_FW_ARQT; e810_arq_post() fills the slot at
 * the head and raises the PFINT_FW_CTL vector.
 *
 * The mailbox queues (PF <-> VF) are plain storage: no VFs are modelled.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "hw/pci/pci.h"
#include "e810_core.h"
#include "e810_adminq.h"
#include "e810_regs.h"
#include "e810_ddp.h"
#include "trace.h"

/* Firmware version answered to 0x0001 (ice_aqc_get_ver) */
#define E810_FW_MAJOR           4
#define E810_FW_MINOR           40
#define E810_FW_PATCH           0
#define E810_FW_BUILD           0x0000e810
/* API 1.5.0: what ice expects for E810 (EXP_FW_API_VER_*_E810) */
#define E810_API_MAJOR          1
#define E810_API_MINOR          5
#define E810_API_PATCH          0

static const char *e810_cq_name[E810_CQ_NUM] = {
    "ATQ", "ARQ", "MBX_ATQ", "MBX_ARQ",
};

bool e810_aq_need_buf(E810AqCmd *cmd, uint16_t min)
{
    if (!cmd->buf || cmd->buf_len < min) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: AQ opcode 0x%04x needs a buffer of >= %u bytes, "
                      "got %u\n", cmd->opcode, min,
                      cmd->buf ? cmd->buf_len : 0);
        return false;
    }
    return true;
}

/* ------------------------------------------------------------------ */
/* simple commands                                                     */

/* 0x0001 get_ver (struct ice_aqc_get_ver) */
static uint16_t e810_aq_get_ver(E810Core *core, E810AqCmd *cmd)
{
    uint8_t *p = cmd->params;

    e810_st32(p + 0, 0);                        /* rom_ver */
    e810_st32(p + 4, E810_FW_BUILD);            /* fw_build */
    p[8] = 0;                                   /* fw_branch */
    p[9] = E810_FW_MAJOR;
    p[10] = E810_FW_MINOR;
    p[11] = E810_FW_PATCH;
    p[12] = 0;                                  /* api_branch */
    p[13] = E810_API_MAJOR;
    p[14] = E810_API_MINOR;
    p[15] = E810_API_PATCH;
    return ICE_AQ_RC_OK;
}

/* 0x0002 driver_ver: remember the version bytes, accept the string */
static uint16_t e810_aq_driver_ver(E810Core *core, E810AqCmd *cmd)
{
    memcpy(core->drv_ver, cmd->params, sizeof(core->drv_ver));
    if (cmd->buf && cmd->buf_len) {
        g_autofree char *s = g_strndup((char *)cmd->buf, cmd->buf_len);
        trace_e810_aq_driver_ver(cmd->params[0], cmd->params[1],
                                 cmd->params[2], cmd->params[3], s);
    }
    return ICE_AQ_RC_OK;
}

/* 0x0003 q_shutdown: the driver disables the rings itself afterwards */
static uint16_t e810_aq_q_shutdown(E810Core *core, E810AqCmd *cmd)
{
    trace_e810_aq_q_shutdown(cmd->params[0] & 1);
    return ICE_AQ_RC_OK;
}

/* 0x0110 clear_pxe_mode */
static uint16_t e810_aq_ok(E810Core *core, E810AqCmd *cmd)
{
    return ICE_AQ_RC_OK;
}

/*
 * Commands the model deliberately answers with an error because the
 * feature behind them is not present (the driver treats these as
 * "not supported" and carries on).
 */
static uint16_t e810_aq_enosys(E810Core *core, E810AqCmd *cmd)
{
    trace_e810_aq_not_supported(cmd->opcode);
    return ICE_AQ_RC_ENOSYS;
}

/* 0x06E0 get_link_topo: no netlist nodes (no C827/E810-T parts) */
static uint16_t e810_aq_enoent(E810Core *core, E810AqCmd *cmd)
{
    trace_e810_aq_not_supported(cmd->opcode);
    return ICE_AQ_RC_ENOENT;
}

/* ------------------------------------------------------------------ */
/* dispatch                                                            */

typedef struct E810AqOp {
    uint16_t opcode;
    const char *name;
    E810AqHandler handler;
} E810AqOp;

/* Sorted by opcode; every opcode the model answers is listed here. */
static const E810AqOp e810_aq_handlers[] = {
    { 0x0001, "get_ver", e810_aq_get_ver },
    { 0x0002, "driver_ver", e810_aq_driver_ver },
    { 0x0003, "q_shutdown", e810_aq_q_shutdown },
    { 0x0008, "req_res", e810_aq_req_res },
    { 0x0009, "release_res", e810_aq_release_res },
    { 0x000A, "list_func_caps", e810_aq_list_caps },
    { 0x000B, "list_dev_caps", e810_aq_list_caps },
    { 0x0107, "manage_mac_read", e810_aq_manage_mac_read },
    { 0x0108, "manage_mac_write", e810_aq_manage_mac_write },
    { 0x0110, "clear_pxe_mode", e810_aq_ok },
    { 0x0200, "get_sw_cfg", e810_aq_get_sw_cfg },
    { 0x0203, "set_port_params", e810_aq_set_port_params },
    { 0x0208, "alloc_res", e810_aq_alloc_free_res },
    { 0x0209, "free_res", e810_aq_alloc_free_res },
    { 0x020C, "set_vlan_mode_parameters", e810_aq_set_vlan_mode },
    { 0x020D, "get_vlan_mode_parameters", e810_aq_get_vlan_mode },
    { 0x0210, "add_vsi", e810_aq_add_vsi },
    { 0x0211, "update_vsi", e810_aq_update_vsi },
    { 0x0213, "free_vsi", e810_aq_free_vsi },
    { 0x02A0, "add_sw_rules", e810_aq_sw_rules },
    { 0x02A1, "update_sw_rules", e810_aq_sw_rules },
    { 0x02A2, "remove_sw_rules", e810_aq_sw_rules },
    { 0x02A4, "clear_pf_cfg", e810_aq_clear_pf_cfg },
    { 0x0400, "get_dflt_topo", e810_aq_get_dflt_topo },
    { 0x0401, "add_sched_elems", e810_aq_add_sched_elems },
    { 0x0403, "cfg_sched_elems", e810_aq_cfg_sched_elems },
    { 0x0404, "get_sched_elems", e810_aq_get_sched_elems },
    { 0x0408, "move_sched_elems", e810_aq_move_sched_elems },
    { 0x0409, "suspend_sched_elems", e810_aq_suspend_resume_sched_elems },
    { 0x040A, "resume_sched_elems", e810_aq_suspend_resume_sched_elems },
    { 0x040F, "delete_sched_elems", e810_aq_delete_sched_elems },
    { 0x0410, "add_rl_profiles", e810_aq_rl_profiles },
    { 0x0412, "query_sched_res", e810_aq_query_sched_res },
    { 0x0415, "remove_rl_profiles", e810_aq_rl_profiles },
    { 0x0600, "get_phy_caps", e810_aq_get_phy_caps },
    { 0x0601, "set_phy_cfg", e810_aq_set_phy_cfg },
    { 0x0603, "set_mac_cfg", e810_aq_set_mac_cfg },
    { 0x0605, "restart_an", e810_aq_restart_an },
    { 0x0607, "get_link_status", e810_aq_get_link_status },
    { 0x0613, "set_event_mask", e810_aq_set_event_mask },
    { 0x06E0, "get_link_topo", e810_aq_enoent },
    { 0x06EA, "get_port_options", e810_aq_get_port_options },
    { 0x0701, "nvm_read", e810_aq_nvm_read },
    { 0x0A08, "lldp_set_local_mib", e810_aq_enosys },
    { 0x0B02, "set_rss_key", e810_aq_set_rss_key },
    { 0x0B03, "set_rss_lut", e810_aq_set_rss_lut },
    { 0x0B04, "get_rss_key", e810_aq_get_rss_key },
    { 0x0B05, "get_rss_lut", e810_aq_get_rss_lut },
    { 0x0C30, "add_txqs", e810_aq_add_txqs },
    { 0x0C31, "dis_txqs", e810_aq_dis_txqs },
    { 0x0C40, "download_pkg", e810_aq_download_pkg },
    { 0x0C41, "upload_section", e810_aq_upload_section },
    { 0x0C42, "update_pkg", e810_aq_update_pkg },
    { 0x0C43, "get_pkg_info_list", e810_aq_get_pkg_info_list },
    { 0xFF30, "fw_logs_config", e810_aq_enosys },
    { 0xFF31, "fw_logs_register", e810_aq_enosys },
    { 0xFF32, "fw_logs_query", e810_aq_enosys },
};

static const E810AqOp *e810_aq_lookup(uint16_t opcode)
{
    size_t lo = 0, hi = ARRAY_SIZE(e810_aq_handlers);

    while (lo < hi) {
        size_t mid = (lo + hi) / 2;

        if (e810_aq_handlers[mid].opcode == opcode) {
            return &e810_aq_handlers[mid];
        } else if (e810_aq_handlers[mid].opcode < opcode) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

/* the opcode's name for traces and fault reports */
const char *e810_aq_opcode_name(uint16_t opcode)
{
    const E810AqOp *op = e810_aq_lookup(opcode);

    return op ? op->name : "unknown";
}

static dma_addr_t e810_cq_base(E810CtlQ *q)
{
    return ((uint64_t)q->bah << 32) | q->bal;
}

static void e810_aq_exec(E810Core *core, E810AqCmd *cmd)
{
    const E810AqOp *op = e810_aq_lookup(cmd->opcode);

    if (!op) {
        qemu_log_mask(LOG_UNIMP, "e810: AQ opcode 0x%04x not implemented\n",
                      cmd->opcode);
        trace_e810_aq_unknown(cmd->opcode);
        cmd->retval = ICE_AQ_RC_ENOSYS;
        return;
    }
    cmd->retval = op->handler(core, cmd);
    trace_e810_aq_cmd(cmd->opcode, op->name, cmd->datalen, cmd->retval);
}

/*
 * Execute the descriptor at daddr (the ATQ head).  False if a delay fault
 * holds it there: it is executed when the fault's timer releases it.
 */
static bool e810_atq_process_one(E810Core *core, dma_addr_t daddr)
{
    PCIDevice *d = core->owner;
    uint8_t desc[E810_AQ_DESC_SIZE];
    uint8_t buf[E810_AQ_BUF_MAX];
    E810AqCmd cmd = { 0 };
    dma_addr_t baddr = 0;
    uint16_t flags, fault_error = 0;
    uint32_t fault_delay = 0;

    if (pci_dma_read(d, daddr, desc, sizeof(desc))) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: ATQ descriptor at 0x%" PRIx64 " unreadable\n",
                      (uint64_t)daddr);
        core->fault.aq_released = false;
        return true;
    }
    cmd.flags = e810_le16(desc + 0);
    cmd.opcode = e810_le16(desc + 2);
    cmd.datalen = e810_le16(desc + 4);
    cmd.cookie_high = e810_le32(desc + 8);
    cmd.cookie_low = e810_le32(desc + 12);
    memcpy(cmd.params, desc + 16, sizeof(cmd.params));

    trace_e810_aq_desc(cmd.opcode, cmd.flags, cmd.datalen);

    /* fault injection (e810_fault.c): error answer and/or delay */
    if (core->fault.aq_released) {
        /* this one waited out its delay */
        core->fault.aq_released = false;
        fault_error = core->fault.aq_held_error;
    } else if (e810_fault_aq_match(core, cmd.opcode, &fault_error,
                                   &fault_delay) && fault_delay) {
        e810_fault_aq_hold(core, cmd.opcode, fault_error, fault_delay);
        return false;
    }

    if (cmd.flags & ICE_AQ_FLAG_BUF) {
        baddr = ((uint64_t)e810_le32(cmd.params + 8) << 32) |
                e810_le32(cmd.params + 12);
        if (cmd.datalen == 0 || cmd.datalen > E810_AQ_BUF_MAX) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: AQ opcode 0x%04x: buffer length %u invalid "
                          "(1..%u)\n", cmd.opcode, cmd.datalen,
                          E810_AQ_BUF_MAX);
            cmd.retval = ICE_AQ_RC_EINVAL;
            goto writeback;
        }
        memset(buf, 0, cmd.datalen);
        if ((cmd.flags & ICE_AQ_FLAG_RD) &&
            pci_dma_read(d, baddr, buf, cmd.datalen)) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: AQ opcode 0x%04x: buffer at 0x%" PRIx64
                          " unreadable\n", cmd.opcode, (uint64_t)baddr);
            cmd.retval = ICE_AQ_RC_EINVAL;
            goto writeback;
        }
        cmd.buf = buf;
        cmd.buf_len = cmd.datalen;
        cmd.resp_len = cmd.datalen;
        /* firmware writes back buffers it was not given to read */
        cmd.buf_wb = !(cmd.flags & ICE_AQ_FLAG_RD);
    }

    if (fault_error) {
        /* firmware refused the command: the handler does not run */
        cmd.retval = fault_error;
        cmd.buf_wb = false;
        trace_e810_aq_cmd(cmd.opcode, e810_aq_opcode_name(cmd.opcode),
                          cmd.datalen, cmd.retval);
        e810_fault_aq_error_fired(core, cmd.opcode, fault_error);
    } else {
        e810_aq_exec(core, &cmd);
    }

    if (cmd.buf) {
        if (cmd.resp_len > cmd.buf_len) {
            /* a model bug, never return more than the driver asked for */
            cmd.resp_len = cmd.buf_len;
        }
        cmd.datalen = cmd.resp_len;
        if (cmd.buf_wb && cmd.resp_len &&
            pci_dma_write(d, baddr, buf, cmd.resp_len)) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: AQ opcode 0x%04x: buffer at 0x%" PRIx64
                          " unwritable\n", cmd.opcode, (uint64_t)baddr);
        }
    }

writeback:
    flags = cmd.flags & ~(ICE_AQ_FLAG_DD | ICE_AQ_FLAG_CMP | ICE_AQ_FLAG_ERR);
    flags |= ICE_AQ_FLAG_DD | ICE_AQ_FLAG_CMP;
    if (cmd.retval) {
        flags |= ICE_AQ_FLAG_ERR;
    }
    e810_st16(desc + 0, flags);
    e810_st16(desc + 4, cmd.datalen);
    e810_st16(desc + 6, cmd.retval);
    memcpy(desc + 16, cmd.params, sizeof(cmd.params));
    if (cmd.flags & ICE_AQ_FLAG_BUF) {
        /* the buffer address stays what the driver put there */
        e810_st32(desc + 24, baddr >> 32);
        e810_st32(desc + 28, (uint32_t)baddr);
    }
    if (pci_dma_write(d, daddr, desc, sizeof(desc))) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: ATQ descriptor at 0x%" PRIx64 " unwritable\n",
                      (uint64_t)daddr);
    }
    return true;
}

static void e810_atq_process(E810Core *core)
{
    E810CtlQ *q = &core->cq[E810_CQ_ATQ];
    uint32_t n = q->len & PF_FW_ATQLEN_ATQLEN_M;
    uint32_t budget;

    if (!(q->len & PF_FW_ATQLEN_ATQENABLE_M) || n == 0) {
        return;
    }
    if (core->fault.aq_held) {
        /* the head command is delayed: later ones wait behind it */
        return;
    }
    if (q->tail >= n) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: PF_FW_ATQT %u beyond ring length %u\n",
                      q->tail, n);
        return;
    }
    if (q->head >= n) {
        q->head = 0;
    }
    /* at most one lap of the ring per tail write */
    for (budget = n; q->head != q->tail && budget; budget--) {
        if (!e810_atq_process_one(core, e810_cq_base(q) +
                                  (dma_addr_t)q->head * E810_AQ_DESC_SIZE)) {
            break;                      /* held by a delay fault */
        }
        q->head = (q->head + 1) % n;
        if (!(q->len & PF_FW_ATQLEN_ATQENABLE_M)) {
            /* a command (q_shutdown/PF reset) disabled the queue */
            break;
        }
    }
}

/* A delay fault's timer released the command at the ATQ head */
void e810_atq_release(E810Core *core)
{
    e810_atq_process(core);
}

bool e810_arq_post(E810Core *core, uint16_t opcode, uint16_t retval,
                   const uint8_t *params, const void *data, uint16_t len)
{
    PCIDevice *d = core->owner;
    E810CtlQ *q = &core->cq[E810_CQ_ARQ];
    uint32_t n = q->len & PF_FW_ATQLEN_ATQLEN_M;
    uint8_t desc[E810_AQ_DESC_SIZE];
    dma_addr_t daddr, baddr;
    uint16_t bufsz, flags;

    if (!(q->len & PF_FW_ATQLEN_ATQENABLE_M) || n == 0 ||
        q->head >= n || q->tail >= n || q->head == q->tail) {
        trace_e810_arq_drop(opcode, q->head, q->tail, q->len);
        return false;
    }
    if (e810_fault_arq_drop(core, opcode)) {
        /* a lost event (e810-fault-arq-drop) */
        trace_e810_arq_drop(opcode, q->head, q->tail, q->len);
        return false;
    }
    daddr = e810_cq_base(q) + (dma_addr_t)q->head * E810_AQ_DESC_SIZE;
    if (pci_dma_read(d, daddr, desc, sizeof(desc))) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: ARQ descriptor unreadable\n");
        return false;
    }
    bufsz = e810_le16(desc + 4);
    baddr = ((uint64_t)e810_le32(desc + 24) << 32) | e810_le32(desc + 28);
    if (len > bufsz) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: ARQ buffer of %u bytes too small for event "
                      "0x%04x (%u bytes), truncated\n", bufsz, opcode, len);
        len = bufsz;
    }
    if (len && pci_dma_write(d, baddr, data, len)) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: ARQ buffer unwritable\n");
        return false;
    }
    flags = ICE_AQ_FLAG_DD | ICE_AQ_FLAG_CMP | (retval ? ICE_AQ_FLAG_ERR : 0);
    if (len) {
        flags |= ICE_AQ_FLAG_BUF;
    }
    e810_st16(desc + 0, flags);
    e810_st16(desc + 2, opcode);
    e810_st16(desc + 4, len);
    e810_st16(desc + 6, retval);
    e810_st32(desc + 8, 0);
    e810_st32(desc + 12, 0);
    memcpy(desc + 16, params, 8);       /* bytes 8..15 keep the address */
    if (pci_dma_write(d, daddr, desc, sizeof(desc))) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: ARQ descriptor unwritable\n");
        return false;
    }
    q->head = (q->head + 1) % n;
    trace_e810_arq_post(opcode, len, q->head);
    e810_intr_fw_event(core);
    return true;
}

/* ------------------------------------------------------------------ */
/* registers                                                           */


uint32_t e810_cq_read(E810Core *core, uint32_t qi, uint32_t reg)
{
    E810CtlQ *q = &core->cq[qi];

    switch (reg) {
    case E810_CQ_REG_BAL:
        return q->bal;
    case E810_CQ_REG_BAH:
        return q->bah;
    case E810_CQ_REG_LEN:
        return q->len;
    case E810_CQ_REG_H:
        return q->head;
    case E810_CQ_REG_T:
        return q->tail;
    }
    return 0;
}

void e810_cq_write(E810Core *core, uint32_t qi, uint32_t reg, uint32_t val)
{
    E810CtlQ *q = &core->cq[qi];

    trace_e810_cq_write(e810_cq_name[qi], reg, val);
    switch (reg) {
    case E810_CQ_REG_BAL:
        q->bal = val;
        break;
    case E810_CQ_REG_BAH:
        q->bah = val;
        break;
    case E810_CQ_REG_LEN:
        /* VFE/OVFL/CRIT (28..30) are write-1-to-clear status; never set */
        q->len = val & (PF_FW_ATQLEN_ATQLEN_M | PF_FW_ATQLEN_ATQENABLE_M);
        if (!(q->len & PF_FW_ATQLEN_ATQENABLE_M)) {
            q->head = 0;
            if (qi == E810_CQ_ATQ) {
                e810_fault_aq_cancel(core);     /* a held command is gone */
            }
        }
        break;
    case E810_CQ_REG_H:
        q->head = val & PF_FW_ATQH_ATQH_M;
        if (qi == E810_CQ_ATQ) {
            e810_fault_aq_cancel(core);
        }
        break;
    case E810_CQ_REG_T:
        q->tail = val & PF_FW_ATQH_ATQH_M;
        if (qi == E810_CQ_ATQ) {
            e810_atq_process(core);
        } else if (qi == E810_CQ_MBX_ATQ && q->tail != q->head &&
                   (q->len & PF_FW_ATQLEN_ATQENABLE_M)) {
            qemu_log_mask(LOG_UNIMP,
                          "e810: mailbox send queue used, no VFs modelled\n");
        }
        break;
    }
}

void e810_adminq_reset(E810Core *core)
{
    e810_fault_aq_cancel(core);
    memset(core->cq, 0, sizeof(core->cq));
}

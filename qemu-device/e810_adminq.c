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
    struct ice_aqc_get_ver *p = &cmd->params.get_ver;

    *p = (struct ice_aqc_get_ver) {
        .rom_ver = 0,
        .fw_build = cpu_to_le32(E810_FW_BUILD),
        .fw_major = E810_FW_MAJOR,
        .fw_minor = E810_FW_MINOR,
        .fw_patch = E810_FW_PATCH,
        .api_major = E810_API_MAJOR,
        .api_minor = E810_API_MINOR,
        .api_patch = E810_API_PATCH,
    };
    return ICE_AQ_RC_OK;
}

/* 0x0002 driver_ver: remember the version bytes, accept the string */
static uint16_t e810_aq_driver_ver(E810Core *core, E810AqCmd *cmd)
{
    const struct ice_aqc_driver_ver *p = &cmd->params.driver_ver;

    core->drv_ver[0] = p->major_ver;
    core->drv_ver[1] = p->minor_ver;
    core->drv_ver[2] = p->build_ver;
    core->drv_ver[3] = p->subbuild_ver;
    if (cmd->buf && cmd->buf_len) {
        g_autofree char *s = g_strndup((char *)cmd->buf, cmd->buf_len);
        trace_e810_aq_driver_ver(p->major_ver, p->minor_ver, p->build_ver,
                                 p->subbuild_ver, s);
    }
    return ICE_AQ_RC_OK;
}

/* 0x0003 q_shutdown: the driver disables the rings itself afterwards */
static uint16_t e810_aq_q_shutdown(E810Core *core, E810AqCmd *cmd)
{
    trace_e810_aq_q_shutdown(cmd->params.q_shutdown.driver_unloading &
                             ICE_AQC_DRIVER_UNLOADING);
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
    /* nothing answered: datalen 0, the driver's buffer left as it was */
    cmd->resp_len = 0;
    cmd->buf_wb = false;
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
#define E810_AQ_OP(name, fn) { ice_aqc_opc_##name, #name, fn }

static const E810AqOp e810_aq_handlers[] = {
    E810_AQ_OP(get_ver, e810_aq_get_ver),
    E810_AQ_OP(driver_ver, e810_aq_driver_ver),
    E810_AQ_OP(q_shutdown, e810_aq_q_shutdown),
    E810_AQ_OP(req_res, e810_aq_req_res),
    E810_AQ_OP(release_res, e810_aq_release_res),
    E810_AQ_OP(list_func_caps, e810_aq_list_caps),
    E810_AQ_OP(list_dev_caps, e810_aq_list_caps),
    E810_AQ_OP(manage_mac_read, e810_aq_manage_mac_read),
    E810_AQ_OP(manage_mac_write, e810_aq_manage_mac_write),
    E810_AQ_OP(clear_pxe_mode, e810_aq_ok),
    E810_AQ_OP(get_sw_cfg, e810_aq_get_sw_cfg),
    E810_AQ_OP(set_port_params, e810_aq_set_port_params),
    E810_AQ_OP(alloc_res, e810_aq_alloc_free_res),
    E810_AQ_OP(free_res, e810_aq_alloc_free_res),
    E810_AQ_OP(set_vlan_mode_parameters, e810_aq_set_vlan_mode),
    E810_AQ_OP(get_vlan_mode_parameters, e810_aq_get_vlan_mode),
    E810_AQ_OP(add_vsi, e810_aq_add_vsi),
    E810_AQ_OP(update_vsi, e810_aq_update_vsi),
    E810_AQ_OP(free_vsi, e810_aq_free_vsi),
    E810_AQ_OP(add_sw_rules, e810_aq_sw_rules),
    E810_AQ_OP(update_sw_rules, e810_aq_sw_rules),
    E810_AQ_OP(remove_sw_rules, e810_aq_sw_rules),
    E810_AQ_OP(clear_pf_cfg, e810_aq_clear_pf_cfg),
    E810_AQ_OP(get_dflt_topo, e810_aq_get_dflt_topo),
    E810_AQ_OP(add_sched_elems, e810_aq_add_sched_elems),
    E810_AQ_OP(cfg_sched_elems, e810_aq_cfg_sched_elems),
    E810_AQ_OP(get_sched_elems, e810_aq_get_sched_elems),
    E810_AQ_OP(move_sched_elems, e810_aq_move_sched_elems),
    E810_AQ_OP(suspend_sched_elems, e810_aq_suspend_resume_sched_elems),
    E810_AQ_OP(resume_sched_elems, e810_aq_suspend_resume_sched_elems),
    E810_AQ_OP(query_port_ets, e810_aq_query_port_ets),
    E810_AQ_OP(delete_sched_elems, e810_aq_delete_sched_elems),
    E810_AQ_OP(add_rl_profiles, e810_aq_rl_profiles),
    E810_AQ_OP(query_sched_res, e810_aq_query_sched_res),
    E810_AQ_OP(remove_rl_profiles, e810_aq_rl_profiles),
    E810_AQ_OP(set_tx_topo, e810_aq_set_tx_topo),
    E810_AQ_OP(get_tx_topo, e810_aq_get_tx_topo),
    E810_AQ_OP(get_phy_caps, e810_aq_get_phy_caps),
    E810_AQ_OP(set_phy_cfg, e810_aq_set_phy_cfg),
    E810_AQ_OP(set_mac_cfg, e810_aq_set_mac_cfg),
    E810_AQ_OP(restart_an, e810_aq_restart_an),
    E810_AQ_OP(get_link_status, e810_aq_get_link_status),
    E810_AQ_OP(set_event_mask, e810_aq_set_event_mask),
    E810_AQ_OP(set_mac_lb, e810_aq_set_mac_lb),
    E810_AQ_OP(get_link_topo, e810_aq_enoent),
    E810_AQ_OP(get_port_options, e810_aq_get_port_options),
    E810_AQ_OP(nvm_read, e810_aq_nvm_read),
    E810_AQ_OP(nvm_checksum, e810_aq_nvm_checksum),
    E810_AQ_OP(lldp_get_mib, e810_aq_lldp_get_mib),
    E810_AQ_OP(lldp_set_mib_change, e810_aq_lldp_set_mib_change),
    E810_AQ_OP(get_cee_dcb_cfg, e810_aq_get_cee_dcb_cfg),
    E810_AQ_OP(lldp_set_local_mib, e810_aq_enosys),
    E810_AQ_OP(set_rss_key, e810_aq_set_rss_key),
    E810_AQ_OP(set_rss_lut, e810_aq_set_rss_lut),
    E810_AQ_OP(get_rss_key, e810_aq_get_rss_key),
    E810_AQ_OP(get_rss_lut, e810_aq_get_rss_lut),
    E810_AQ_OP(add_txqs, e810_aq_add_txqs),
    E810_AQ_OP(dis_txqs, e810_aq_dis_txqs),
    E810_AQ_OP(download_pkg, e810_aq_download_pkg),
    E810_AQ_OP(upload_section, e810_aq_upload_section),
    E810_AQ_OP(update_pkg, e810_aq_update_pkg),
    E810_AQ_OP(get_pkg_info_list, e810_aq_get_pkg_info_list),
    E810_AQ_OP(fw_logs_config, e810_aq_fwlog_config),
    E810_AQ_OP(fw_logs_register, e810_aq_fwlog_register),
    E810_AQ_OP(fw_logs_query, e810_aq_fwlog_query),
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

/* Guest address of descriptor i of a control queue */
static dma_addr_t e810_cq_desc(E810CtlQ *q, uint32_t i)
{
    return (((uint64_t)q->bah << 32) | q->bal) +
           (dma_addr_t)i * sizeof(struct ice_aq_desc);
}

static void e810_aq_exec(E810Core *core, E810AqCmd *cmd)
{
    const E810AqOp *op = e810_aq_lookup(cmd->opcode);

    if (!op) {
        qemu_log_mask(LOG_UNIMP, "e810: AQ opcode 0x%04x not implemented\n",
                      cmd->opcode);
        trace_e810_aq_unknown(cmd->opcode);
        cmd->resp_len = 0;
        cmd->buf_wb = false;
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
    struct ice_aq_desc desc;
    uint8_t buf[E810_AQ_BUF_MAX];
    E810AqCmd cmd = { 0 };
    dma_addr_t baddr = 0;
    uint16_t flags, fault_error = 0;
    uint32_t fault_delay = 0;

    if (pci_dma_read(d, daddr, &desc, sizeof(desc))) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: ATQ descriptor at 0x%" PRIx64 " unreadable\n",
                      (uint64_t)daddr);
        core->fault.aq_released = false;
        return true;
    }
    cmd.flags = le16_to_cpu(desc.flags);
    cmd.opcode = le16_to_cpu(desc.opcode);
    cmd.datalen = le16_to_cpu(desc.datalen);
    cmd.params = desc.params;

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
        baddr = ((uint64_t)le32_to_cpu(desc.params.generic.addr_high) << 32) |
                le32_to_cpu(desc.params.generic.addr_low);
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
    desc.flags = cpu_to_le16(flags);
    desc.datalen = cpu_to_le16(cmd.datalen);
    desc.retval = cpu_to_le16(cmd.retval);
    desc.params = cmd.params;
    if (cmd.flags & ICE_AQ_FLAG_BUF) {
        /* the buffer address stays what the driver put there */
        desc.params.generic.addr_high = cpu_to_le32(baddr >> 32);
        desc.params.generic.addr_low = cpu_to_le32((uint32_t)baddr);
    }
    if (pci_dma_write(d, daddr, &desc, sizeof(desc))) {
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
        if (!e810_atq_process_one(core, e810_cq_desc(q, q->head))) {
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
                   const union ice_aq_params *params, const void *data,
                   uint16_t len)
{
    PCIDevice *d = core->owner;
    E810CtlQ *q = &core->cq[E810_CQ_ARQ];
    uint32_t n = q->len & PF_FW_ATQLEN_ATQLEN_M;
    struct ice_aq_desc desc;
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
    daddr = e810_cq_desc(q, q->head);
    if (pci_dma_read(d, daddr, &desc, sizeof(desc))) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: ARQ descriptor unreadable\n");
        return false;
    }
    bufsz = le16_to_cpu(desc.datalen);
    baddr = ((uint64_t)le32_to_cpu(desc.params.generic.addr_high) << 32) |
            le32_to_cpu(desc.params.generic.addr_low);
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
    desc.flags = cpu_to_le16(flags);
    desc.opcode = cpu_to_le16(opcode);
    desc.datalen = cpu_to_le16(len);
    desc.retval = cpu_to_le16(retval);
    desc.cookie_high = 0;
    desc.cookie_low = 0;
    /* the event's parameters; addr_high/addr_low keep the buffer address */
    memcpy(desc.params.raw, params->raw,
           offsetof(struct ice_aqc_generic, addr_high));
    if (pci_dma_write(d, daddr, &desc, sizeof(desc))) {
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

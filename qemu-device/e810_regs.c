/*
 * QEMU Intel E810 ("ice") Ethernet controller: BAR0 register dispatch
 *
 * BAR0 is 32 MiB and sparse.  Accesses are dispatched through a table of
 * register *ranges* {offset, stride, count, read, write}, sorted by
 * offset and searched with a binary search.  Offsets outside every range
 * read 0 and ignore writes, logged once per offset as LOG_UNIMP.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "hw/pci/pci.h"
#include "e810_core.h"
#include "e810_regs.h"
#include "trace.h"

typedef struct E810RegRange E810RegRange;

typedef uint32_t (*E810RegRead)(E810Core *c, const E810RegRange *r,
                                uint32_t idx);
typedef void (*E810RegWrite)(E810Core *c, const E810RegRange *r,
                             uint32_t idx, uint32_t val);

struct E810RegRange {
    const char *name;
    uint32_t base;
    uint32_t stride;
    uint32_t count;             /* number of registers in the range */
    E810RegRead read;           /* NULL: reads return 'value' */
    E810RegWrite write;         /* NULL: writes are ignored (read-only) */
    size_t store;               /* offset of a uint32_t array in E810Core */
    uint32_t nstore;            /* elements of that array (0: no storage) */
    uint32_t value;             /* constant read value without 'read' */
};

/* Cap on distinct unimplemented offsets we log about */
#define E810_UNIMP_LOG_MAX      4096

/* ------------------------------------------------------------------ */
/* generic accessors                                                   */

static uint32_t *reg_store(E810Core *c, const E810RegRange *r, uint32_t idx)
{
    if (!r->nstore || idx >= r->nstore) {
        return NULL;
    }
    return (uint32_t *)((uint8_t *)c + r->store) + idx;
}

static uint32_t rd_store(E810Core *c, const E810RegRange *r, uint32_t idx)
{
    uint32_t *p = reg_store(c, r, idx);

    if (!p) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: read of %s[%u] beyond the %u this PF owns\n",
                      r->name, idx, r->nstore);
        return 0;
    }
    return *p;
}

static void wr_store(E810Core *c, const E810RegRange *r, uint32_t idx,
                     uint32_t val)
{
    uint32_t *p = reg_store(c, r, idx);

    if (!p) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: write of %s[%u] beyond the %u this PF owns\n",
                      r->name, idx, r->nstore);
        return;
    }
    *p = val;
}

static void wr_ignore(E810Core *c, const E810RegRange *r, uint32_t idx,
                      uint32_t val)
{
}

static void wr_readonly(E810Core *c, const E810RegRange *r, uint32_t idx,
                        uint32_t val)
{
    qemu_log_mask(LOG_GUEST_ERROR, "e810: write 0x%x to read-only %s\n",
                  val, r->name);
}

/* W1C storage (PFPM_WUS) */
static void wr_w1c(E810Core *c, const E810RegRange *r, uint32_t idx,
                   uint32_t val)
{
    uint32_t *p = reg_store(c, r, idx);

    if (p) {
        *p &= ~val;
    }
}

/* ------------------------------------------------------------------ */
/* reset, identity, firmware state                                     */

static uint32_t rd_pf_func_rid(E810Core *c, const E810RegRange *r,
                               uint32_t idx)
{
    return PCI_FUNC(c->owner->devfn) & PF_FUNC_RID_FUNC_NUM_M;
}

static void wr_pfgen_ctrl(E810Core *c, const E810RegRange *r, uint32_t idx,
                          uint32_t val)
{
    if (val & PFGEN_CTRL_PFSWR_M) {
        /* The PF reset completes at once: PFSWR reads back 0. */
        trace_e810_pf_reset();
        e810_core_pf_reset(c);
    }
}

static uint32_t rd_pfint_alloc(E810Core *c, const E810RegRange *r,
                               uint32_t idx)
{
    /* FIRST 10:0 = 0, LAST 22:12, VALID 31 */
    return ((c->msix_vectors - 1) << 12) | E810_BIT(31);
}

/* driver-initiated core (1) or global (2) reset */
static void wr_glgen_rtrig(E810Core *c, const E810RegRange *r, uint32_t idx,
                           uint32_t val)
{
    if (val & GLGEN_RTRIG_GLOBR_M) {
        e810_core_global_reset(c, E810_RESET_GLOBR);
    } else if (val & GLGEN_RTRIG_CORER_M) {
        e810_core_global_reset(c, E810_RESET_CORER);
    }
}

/* ------------------------------------------------------------------ */
/* control queue registers: one range per register kind, 4 queues each */

/*
 * PF_FW_xxx and PF_MBX_xxx are not evenly spaced, so each control-queue
 * register has its own one-element range and the range's 'value' field
 * carries (queue << 8 | register kind).
 */
#define CQ(q, reg)  (((q) << 8) | (reg))

static uint32_t rd_cq(E810Core *c, const E810RegRange *r, uint32_t idx)
{
    return e810_cq_read(c, r->value >> 8, r->value & 0xff);
}

static void wr_cq(E810Core *c, const E810RegRange *r, uint32_t idx,
                  uint32_t val)
{
    e810_cq_write(c, r->value >> 8, r->value & 0xff, val);
}

/* ------------------------------------------------------------------ */
/* interrupts                                                          */

static uint32_t rd_pfint_oicr(E810Core *c, const E810RegRange *r,
                              uint32_t idx)
{
    return e810_intr_oicr_read(c);
}

static uint32_t rd_dyn_ctl(E810Core *c, const E810RegRange *r, uint32_t idx)
{
    if (idx >= c->msix_vectors) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: read of GLINT_DYN_CTL(%u), PF has %u vectors\n",
                      idx, c->msix_vectors);
        return 0;
    }
    return c->glint_dyn_ctl[idx];
}

static void wr_dyn_ctl(E810Core *c, const E810RegRange *r, uint32_t idx,
                       uint32_t val)
{
    if (idx >= c->msix_vectors) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: write 0x%x to GLINT_DYN_CTL(%u), "
                      "PF has %u vectors\n", val, idx, c->msix_vectors);
        return;
    }
    e810_intr_dyn_ctl_write(c, idx, val);
}

/* GLINT_ITR(i, v): three 2048-entry banks, 8 KiB apart */
static uint32_t rd_itr(E810Core *c, const E810RegRange *r, uint32_t idx)
{
    uint32_t bank = idx / 2048, v = idx % 2048;

    if (bank >= 3 || v >= E810_MAX_VECTORS) {
        return 0;
    }
    return c->glint_itr[bank][v];
}

static void wr_itr(E810Core *c, const E810RegRange *r, uint32_t idx,
                   uint32_t val)
{
    uint32_t bank = idx / 2048, v = idx % 2048;

    if (bank >= 3 || v >= E810_MAX_VECTORS) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: write of GLINT_ITR(%u, %u) beyond the PF's "
                      "vectors\n", bank, v);
        return;
    }
    c->glint_itr[bank][v] = val & 0xFFF;
}

/* ------------------------------------------------------------------ */
/* LAN queues                                                          */

/* QRX_CONTEXT(i, q): eight 2048-entry banks, 8 KiB apart */
static uint32_t rd_qrx_context(E810Core *c, const E810RegRange *r,
                               uint32_t idx)
{
    uint32_t i = idx / 2048, q = idx % 2048;

    if (q >= E810_NUM_QUEUES) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: read of QRX_CONTEXT(%u, %u): PF owns %u queues\n",
                      i, q, E810_NUM_QUEUES);
        return 0;
    }
    return c->qrx_context[i][q];
}

static void wr_qrx_context(E810Core *c, const E810RegRange *r, uint32_t idx,
                           uint32_t val)
{
    uint32_t i = idx / 2048, q = idx % 2048;

    if (q >= E810_NUM_QUEUES) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: write of QRX_CONTEXT(%u, %u): PF owns %u "
                      "queues\n", i, q, E810_NUM_QUEUES);
        return;
    }
    c->qrx_context[i][q] = val;
}

static void wr_qrx_ctrl(E810Core *c, const E810RegRange *r, uint32_t idx,
                        uint32_t val)
{
    if (idx >= E810_NUM_QUEUES) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: write of QRX_CTRL(%u): PF owns %u queues\n",
                      idx, E810_NUM_QUEUES);
        return;
    }
    e810_rxq_ctrl_write(c, idx, val);
}

static void wr_qrx_tail(E810Core *c, const E810RegRange *r, uint32_t idx,
                        uint32_t val)
{
    e810_rxq_tail_write(c, idx, val);
}

static void wr_qtx_dbell(E810Core *c, const E810RegRange *r, uint32_t idx,
                         uint32_t val)
{
    if (idx >= E810_NUM_QUEUES) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: write of QTX_COMM_DBELL(%u): PF owns %u queues\n",
                      idx, E810_NUM_QUEUES);
        return;
    }
    e810_txq_dbell_write(c, idx, val);
}

/* ------------------------------------------------------------------ */
/* the table                                                           */

#define ST(field)  .store = offsetof(E810Core, field), \
                   .nstore = ARRAY_SIZE(((E810Core *)0)->field)
#define ST1(field) .store = offsetof(E810Core, field), .nstore = 1

#define REG_CONST(n, off, v) \
    { .name = n, .base = off, .stride = 4, .count = 1, .value = v, \
      .write = wr_readonly }
#define REG_RW1(n, off, field) \
    { .name = n, .base = off, .stride = 4, .count = 1, ST1(field), \
      .read = rd_store, .write = wr_store }
#define REG_CQ(n, off, q, reg) \
    { .name = n, .base = off, .stride = 4, .count = 1, .value = CQ(q, reg), \
      .read = rd_cq, .write = wr_cq }

/* statistics counters: read 0 (no traffic is counted yet) */
#define REG_CNT(n, off, stride_, cnt) \
    { .name = n, .base = off, .stride = stride_, .count = cnt, .value = 0, \
      .write = wr_ignore }
/* per-VSI 40/48-bit counters: 768 VSIs x (low, high) dwords */
#define REG_CNT_VSI(n, off) REG_CNT(n, off, 4, E810_MAX_VSI * 2)

/* Must be sorted by base; e810_regs_init() checks it. */
static const E810RegRange e810_reg_ranges[] = {
    { .name = "GL_MDCK_TX_TDPU", .base = GL_MDCK_TX_TDPU, .stride = 4,
      .count = 1, ST1(gl_mdck_tx_tdpu), .read = rd_store, .write = wr_store },
    REG_CQ("PF_FW_ATQBAL", PF_FW_ATQBAL, E810_CQ_ATQ, E810_CQ_REG_BAL),
    REG_CQ("PF_FW_ARQBAL", PF_FW_ARQBAL, E810_CQ_ARQ, E810_CQ_REG_BAL),
    REG_CQ("PF_FW_ATQBAH", PF_FW_ATQBAH, E810_CQ_ATQ, E810_CQ_REG_BAH),
    REG_CQ("PF_FW_ARQBAH", PF_FW_ARQBAH, E810_CQ_ARQ, E810_CQ_REG_BAH),
    REG_CQ("PF_FW_ATQLEN", PF_FW_ATQLEN, E810_CQ_ATQ, E810_CQ_REG_LEN),
    REG_CQ("PF_FW_ARQLEN", PF_FW_ARQLEN, E810_CQ_ARQ, E810_CQ_REG_LEN),
    REG_CQ("PF_FW_ATQH", PF_FW_ATQH, E810_CQ_ATQ, E810_CQ_REG_H),
    REG_CQ("PF_FW_ARQH", PF_FW_ARQH, E810_CQ_ARQ, E810_CQ_REG_H),
    REG_CQ("PF_FW_ATQT", PF_FW_ATQT, E810_CQ_ATQ, E810_CQ_REG_T),
    REG_CQ("PF_FW_ARQT", PF_FW_ARQT, E810_CQ_ARQ, E810_CQ_REG_T),
    /* the firmware DCBX agent runs, no peer answered (e810_dcb.c) */
    REG_CONST("PRTDCB_GENS", PRTDCB_GENS, PRTDCB_GENS_DCBX_STATUS_IN_PROGRESS),
    REG_CONST("PFGEN_STATE", PFGEN_STATE, 0),
    { .name = "PFGEN_CTRL", .base = PFGEN_CTRL, .stride = 4, .count = 1,
      .value = 0, .write = wr_pfgen_ctrl },
    { .name = "PFPM_WUS", .base = PFPM_WUS, .stride = 4, .count = 1,
      ST1(pfpm_wus), .read = rd_store, .write = wr_w1c },
    { .name = "PFPM_WUFC", .base = PFPM_WUFC, .stride = 4, .count = 1,
      ST1(pfpm_wufc), .read = rd_store, .write = wr_store },
    { .name = "PF_FUNC_RID", .base = PF_FUNC_RID, .stride = 4, .count = 1,
      .read = rd_pf_func_rid, .write = wr_readonly },
    { .name = "PRTRPB_RDPC", .base = PRTRPB_RDPC, .stride = 4, .count = 1,
      ST1(rx_drops), .read = rd_store, .write = wr_readonly },
    { .name = "GLNVM_ULD", .base = GLNVM_ULD, .stride = 4, .count = 1,
      ST1(glnvm_uld), .read = rd_store, .write = wr_readonly },
    REG_CONST("GLNVM_GENS", GLNVM_GENS, 6 << GLNVM_GENS_SR_SIZE_S),
    REG_CONST("GLNVM_FLA", GLNVM_FLA, GLNVM_FLA_LOCKED_M),
    REG_CONST("GLGEN_STAT", GLGEN_STAT, 0),
    REG_CONST("GL_MNG_FWSM", GL_MNG_FWSM, 0),
    { .name = "PFPM_APM", .base = PFPM_APM, .stride = 4, .count = 1,
      ST1(pfpm_apm), .read = rd_store, .write = wr_store },
    REG_CONST("GLGEN_RSTCTL", GLGEN_RSTCTL, 8),
    { .name = "GLGEN_RSTAT", .base = GLGEN_RSTAT, .stride = 4, .count = 1,
      ST1(glgen_rstat), .read = rd_store, .write = wr_readonly },
    { .name = "GLGEN_RTRIG", .base = GLGEN_RTRIG, .stride = 4, .count = 1,
      .value = 0, .write = wr_glgen_rtrig },
    REG_CONST("GL_PWR_MODE_CTL", GL_PWR_MODE_CTL, 0),
    REG_CONST("GLGEN_CLKSTAT_SRC", GLGEN_CLKSTAT_SRC, 0),
    REG_CONST("GLPCI_CNF2", GLPCI_CNF2, 0),
    { .name = "QTX_COMM_HEAD", .base = QTX_COMM_HEAD(0), .stride = 4,
      .count = 16384, ST(qtx_comm_head), .read = rd_store,
      .write = wr_readonly },
    { .name = "QRX_CTRL", .base = QRX_CTRL(0), .stride = 4,
      .count = QRX_CTRL_MAX_INDEX + 1, ST(qrx_ctrl), .read = rd_store,
      .write = wr_qrx_ctrl },
    { .name = "QINT_TQCTL", .base = QINT_TQCTL(0), .stride = 4,
      .count = 16384, ST(qint_tqctl), .read = rd_store, .write = wr_store },
    { .name = "QINT_RQCTL", .base = QINT_RQCTL(0), .stride = 4,
      .count = 2048, ST(qint_rqctl), .read = rd_store, .write = wr_store },
    { .name = "GLINT_ITR", .base = GLINT_ITR(0, 0), .stride = 4,
      .count = 3 * 2048, .read = rd_itr, .write = wr_itr },
    { .name = "GLINT_RATE", .base = GLINT_RATE(0), .stride = 4,
      .count = 2048, ST(glint_rate), .read = rd_store, .write = wr_store },
    { .name = "GLINT_DYN_CTL", .base = GLINT_DYN_CTL(0), .stride = 4,
      .count = 2048, .read = rd_dyn_ctl, .write = wr_dyn_ctl },
    { .name = "GLINT_VECT2FUNC", .base = GLINT_VECT2FUNC(0), .stride = 4,
      .count = 2048, ST(glint_vect2func), .read = rd_store,
      .write = wr_store },
    REG_RW1("PFINT_MBX_CTL", PFINT_MBX_CTL, pfint_mbx_ctl),
    REG_RW1("PFINT_SB_CTL", PFINT_SB_CTL, pfint_sb_ctl),
    REG_RW1("PFINT_FW_CTL", PFINT_FW_CTL, pfint_fw_ctl),
    REG_RW1("PFINT_OICR_ENA", PFINT_OICR_ENA, pfint_oicr_ena),
    REG_RW1("PFINT_TSYN_MSK", PFINT_TSYN_MSK, pfint_tsyn_msk),
    { .name = "PFINT_OICR", .base = PFINT_OICR, .stride = 4, .count = 1,
      .read = rd_pfint_oicr, .write = wr_ignore },
    REG_RW1("PFINT_OICR_CTL", PFINT_OICR_CTL, pfint_oicr_ctl),
    REG_RW1("GLINT_CTL", GLINT_CTL, glint_ctl),
    { .name = "PFINT_ALLOC", .base = PFINT_ALLOC, .stride = 4, .count = 1,
      .read = rd_pfint_alloc, .write = wr_readonly },
    REG_CONST("PRTDCB_TUP2TC", PRTDCB_TUP2TC, 0),
    { .name = "E800_PRTMAC_HSEC_CTL_TX_PS_QNT",
      .base = E800_PRTMAC_HSEC_CTL_TX_PS_QNT(0), .stride = 32, .count = 9,
      .value = 0xFFFF, .write = wr_ignore },
    { .name = "E800_PRTMAC_HSEC_CTL_TX_PS_RFSH_TMR",
      .base = E800_PRTMAC_HSEC_CTL_TX_PS_RFSH_TMR(0), .stride = 32,
      .count = 9, .value = 0x7FFF, .write = wr_ignore },
    { .name = "GL_PREEXT_L2_PMASK0", .base = GL_PREEXT_L2_PMASK0(0),
      .stride = 4, .count = 1, ST1(gl_preext_l2_pmask[0]),
      .read = rd_store, .write = wr_store },
    { .name = "GL_PREEXT_L2_PMASK1", .base = GL_PREEXT_L2_PMASK1(0),
      .stride = 4, .count = 1, ST1(gl_preext_l2_pmask[1]),
      .read = rd_store, .write = wr_store },
    REG_CQ("PF_MBX_ATQBAL", PF_MBX_ATQBAL, E810_CQ_MBX_ATQ, E810_CQ_REG_BAL),
    REG_CQ("PF_MBX_ATQBAH", PF_MBX_ATQBAH, E810_CQ_MBX_ATQ, E810_CQ_REG_BAH),
    REG_CQ("PF_MBX_ATQLEN", PF_MBX_ATQLEN, E810_CQ_MBX_ATQ, E810_CQ_REG_LEN),
    REG_CQ("PF_MBX_ATQH", PF_MBX_ATQH, E810_CQ_MBX_ATQ, E810_CQ_REG_H),
    REG_CQ("PF_MBX_ATQT", PF_MBX_ATQT, E810_CQ_MBX_ATQ, E810_CQ_REG_T),
    REG_CQ("PF_MBX_ARQBAL", PF_MBX_ARQBAL, E810_CQ_MBX_ARQ, E810_CQ_REG_BAL),
    REG_CQ("PF_MBX_ARQBAH", PF_MBX_ARQBAH, E810_CQ_MBX_ARQ, E810_CQ_REG_BAH),
    REG_CQ("PF_MBX_ARQLEN", PF_MBX_ARQLEN, E810_CQ_MBX_ARQ, E810_CQ_REG_LEN),
    REG_CQ("PF_MBX_ARQH", PF_MBX_ARQH, E810_CQ_MBX_ARQ, E810_CQ_REG_H),
    REG_CQ("PF_MBX_ARQT", PF_MBX_ARQT, E810_CQ_MBX_ARQ, E810_CQ_REG_T),
    { .name = "QRX_CONTEXT", .base = QRX_CONTEXT(0, 0), .stride = 4,
      .count = E810_QRX_CONTEXT_DWORDS * 2048, .read = rd_qrx_context,
      .write = wr_qrx_context },
    { .name = "QRX_TAIL", .base = QRX_TAIL(0), .stride = 4, .count = 2048,
      ST(qrx_tail), .read = rd_store, .write = wr_qrx_tail },
    { .name = "QRX_ITR", .base = QRX_ITR(0), .stride = 4, .count = 2048,
      ST(qrx_itr), .read = rd_store, .write = wr_store },
    REG_CNT("GLV_RDPC", GLV_RDPC(0), 4, E810_MAX_VSI),
    { .name = "QTX_COMM_DBELL", .base = QTX_COMM_DBELL(0), .stride = 4,
      .count = 16384, .value = 0, .write = wr_qtx_dbell },
    REG_CNT_VSI("GLV_GOTCL", GLV_GOTCL(0)),
    REG_CNT_VSI("GLV_UPTCL", GLV_UPTCL(0)),
    REG_CNT_VSI("GLV_MPTCL", GLV_MPTCL(0)),
    REG_CNT_VSI("GLV_BPTCL", GLV_BPTCL(0)),
    REG_CNT("GLV_TEPC", GLV_TEPC(0), 4, E810_MAX_VSI),
    /* the GLPRT_* port counters of all 8 ports, 0x380000..0x3813FF */
    REG_CNT("GLPRT_stats", GLPRT_GORCL(0), 4, 0x1400 / 4),
    /* flow-director counter blocks */
    REG_CNT("GLSTAT_FD_CNT", GLSTAT_FD_CNT0L(0), 4, 0x10000 / 4),
    REG_CNT_VSI("GLV_GORCL", GLV_GORCL(0)),
    REG_CNT_VSI("GLV_UPRCL", GLV_UPRCL(0)),
    REG_CNT_VSI("GLV_MPRCL", GLV_MPRCL(0)),
    REG_CNT_VSI("GLV_BPRCL", GLV_BPRCL(0)),
    /* flexible-pipeline profile registers (e810_ddp.c, e810_rss.c) */
    { .name = "GLQF_HSYMM", .base = GLQF_HSYMM(0, 0), .stride = 4,
      .count = E810_FLEX_PROF_REGS, ST(flex.glqf_hsymm), .read = rd_store,
      .write = wr_store },
    { .name = "GLQF_HMASK", .base = GLQF_HMASK(0), .stride = 4,
      .count = GLQF_HMASK_MAX_INDEX + 1, ST(glqf_hmask), .read = rd_store,
      .write = wr_store },
    { .name = "GLQF_HMASK_SEL", .base = GLQF_HMASK_SEL(0), .stride = 4,
      .count = GLQF_HMASK_SEL_MAX_INDEX + 1, ST(glqf_hmask_sel),
      .read = rd_store, .write = wr_store },
    { .name = "GLQF_FDMASK_SEL", .base = GLQF_FDMASK_SEL(0), .stride = 4,
      .count = GLQF_HMASK_SEL_MAX_INDEX + 1, ST(glqf_fdmask_sel),
      .read = rd_store, .write = wr_store },
    { .name = "GLQF_FDMASK", .base = GLQF_FDMASK(0), .stride = 4,
      .count = GLQF_FDMASK_MAX_INDEX + 1, ST(glqf_fdmask), .read = rd_store,
      .write = wr_store },
    { .name = "GLQF_FDINSET", .base = GLQF_FDINSET(0, 0), .stride = 4,
      .count = E810_FLEX_PROF_REGS, ST(flex.glqf_fdinset), .read = rd_store,
      .write = wr_store },
    { .name = "GLQF_FDSWAP", .base = GLQF_FDSWAP(0, 0), .stride = 4,
      .count = E810_FLEX_PROF_REGS, ST(flex.glqf_fdswap), .read = rd_store,
      .write = wr_store },
    { .name = "PFQF_FD_ENA", .base = PFQF_FD_ENA, .stride = 4, .count = 1,
      ST1(pfqf_fd_ena), .read = rd_store, .write = wr_store },
    /* flow director: table sizes, what the PF holds, no filters counted */
    REG_CONST("GLQF_FD_SIZE", GLQF_FD_SIZE,
              E810_FD_GSIZE | (E810_FD_BSIZE << 16)),
    REG_CONST("GLQF_FD_CNT", GLQF_FD_CNT, 0),
    { .name = "PFQF_FD_SIZE", .base = PFQF_FD_SIZE, .stride = 4, .count = 1,
      ST1(flex.pfqf_fd_size), .read = rd_store, .write = wr_readonly },
    REG_CNT("VSIQF_FD_CNT", VSIQF_FD_CNT(0), 4, E810_MAX_VSI),
    { .name = "QRXFLXP_CNTXT", .base = QRXFLXP_CNTXT(0), .stride = 4,
      .count = 2048, ST(qrxflxp_cntxt), .read = rd_store, .write = wr_store },
};

static const E810RegRange *e810_reg_find_in(const E810RegRange *t, size_t n,
                                            hwaddr addr, uint32_t *idx)
{
    size_t lo = 0, hi = n;

    /* last range with base <= addr */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t[mid].base <= addr) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == 0) {
        return NULL;
    }
    t = &t[lo - 1];
    if (addr >= (hwaddr)t->base + (hwaddr)t->stride * t->count ||
        (addr - t->base) % t->stride) {
        return NULL;
    }
    *idx = (addr - t->base) / t->stride;
    return t;
}

static const E810RegRange *e810_reg_find(hwaddr addr, uint32_t *idx)
{
    return e810_reg_find_in(e810_reg_ranges, ARRAY_SIZE(e810_reg_ranges),
                            addr, idx);
}

static void e810_unimp(E810Core *c, const char *what, hwaddr addr,
                       uint64_t val)
{
    gpointer key = GUINT_TO_POINTER((guint)addr);

    if (g_hash_table_size(c->unimp_logged) >= E810_UNIMP_LOG_MAX ||
        g_hash_table_contains(c->unimp_logged, key)) {
        return;
    }
    g_hash_table_add(c->unimp_logged, key);
    qemu_log_mask(LOG_UNIMP, "e810: unimplemented register %s at 0x%"
                  HWADDR_PRIx " (value 0x%" PRIx64 ")\n", what, addr, val);
}

static uint64_t e810_mmio_read(void *opaque, hwaddr addr, unsigned size)
{
    E810Core *c = opaque;
    const E810RegRange *r;
    uint32_t idx = 0, val;

    r = e810_reg_find(addr, &idx);
    if (!r) {
        e810_unimp(c, "read", addr, 0);
        trace_e810_mmio_read_unknown(addr);
        return 0;
    }
    val = r->read ? r->read(c, r, idx) : r->value;
    trace_e810_mmio_read(addr, r->name, idx, val);
    return val;
}

static void e810_mmio_write(void *opaque, hwaddr addr, uint64_t val,
                            unsigned size)
{
    E810Core *c = opaque;
    const E810RegRange *r;
    uint32_t idx = 0;

    r = e810_reg_find(addr, &idx);
    if (!r) {
        e810_unimp(c, "write", addr, val);
        trace_e810_mmio_write_unknown(addr, val);
        return;
    }
    trace_e810_mmio_write(addr, r->name, idx, val);
    if (r->write) {
        r->write(c, r, idx, val);
    }
}

const MemoryRegionOps e810_mmio_ops = {
    .read = e810_mmio_read,
    .write = e810_mmio_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    .valid = {
        .min_access_size = 4,
        .max_access_size = 8,   /* the driver's rd64() on statistics */
    },
    .impl = {
        .min_access_size = 4,
        .max_access_size = 4,
    },
};

static void e810_regs_check_table(const E810RegRange *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        /* a programming error in the static tables, not guest input */
        assert(t[i].stride >= 4 && t[i].count >= 1);
        if (i) {
            assert(t[i].base >= (uint64_t)t[i - 1].base +
                   (uint64_t)t[i - 1].stride * (t[i - 1].count - 1) + 4);
        }
    }
}

void e810_regs_init(E810Core *core)
{
    e810_regs_check_table(e810_reg_ranges, ARRAY_SIZE(e810_reg_ranges));
    core->unimp_logged = g_hash_table_new(g_direct_hash, g_direct_equal);
}

void e810_regs_cleanup(E810Core *core)
{
    g_hash_table_destroy(core->unimp_logged);
    core->unimp_logged = NULL;
}

void e810_regs_reset(E810Core *core)
{
    core->glgen_rstat = 0;              /* DEVSTATE = active */
    core->glnvm_uld = E810_GLNVM_ULD_ALL_DONE;
    core->gl_mdck_tx_tdpu = 0;
    core->pfqf_fd_ena = 0;
    core->pfpm_wus = 0;
    core->pfpm_wufc = 0;
    core->pfpm_apm = 0;
    memset(core->gl_preext_l2_pmask, 0, sizeof(core->gl_preext_l2_pmask));
    memset(core->glqf_hmask, 0, sizeof(core->glqf_hmask));
    memset(core->glqf_hmask_sel, 0, sizeof(core->glqf_hmask_sel));
    memset(core->glqf_fdmask, 0, sizeof(core->glqf_fdmask));
    memset(core->glqf_fdmask_sel, 0, sizeof(core->glqf_fdmask_sel));
    memset(core->qrx_tail, 0, sizeof(core->qrx_tail));
    memset(core->qrx_itr, 0, sizeof(core->qrx_itr));
    memset(core->qrx_context, 0, sizeof(core->qrx_context));
    memset(core->qrxflxp_cntxt, 0, sizeof(core->qrxflxp_cntxt));
}

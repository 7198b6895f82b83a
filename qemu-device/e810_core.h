/*
 * QEMU Intel E810 ("ice") Ethernet controller: device core state
 *
 * The PCI front-end (e810.c) owns the PCIDevice, BARs and capabilities;
 * everything behind BAR0 lives in E810Core and is split by the E810's own
 * nouns: e810_regs.c (BAR0 dispatch), e810_adminq.c (admin queue engine),
 * e810_nvm.c, e810_caps.c, e810_sched.c, e810_switch.c, e810_link.c,
 * e810_rxq.c, e810_txq.c and e810_intr.c.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_NET_E810_CORE_H
#define HW_NET_E810_CORE_H

#include "hw/pci/pci_device.h"
#include "net/net.h"
#include "qemu/timer.h"
#include "e810_regs.h"
#include "e810_flex.h"

struct NetRxPkt;
struct NetTxPkt;
union ice_aq_params;

/* GLINT_* vectors the PF can own (bound of the msix-vectors property) */
#define E810_MAX_VECTORS        1024
#define E810_MIN_VECTORS        2
#define E810_DEFAULT_VECTORS    64

/* LAN queue pairs owned by the PF (reported as the TXQS/RXQS caps) */
#define E810_NUM_QUEUES         256
#define E810_QRX_CONTEXT_DWORDS 8

/* GLGEN_RSTAT.RESET_TYPE values (enum ice_reset_req) */
#define E810_RESET_CORER        1
#define E810_RESET_GLOBR        2
#define E810_RESET_EMPR         3
/* GLGEN_RSTAT.DEVSTATE while a core/global/EMP reset is in progress */
#define E810_DEVSTATE_IN_RESET  1
/* virtual time from the reset warning to "reset done" */
#define E810_RESET_DONE_NS      (50 * SCALE_MS)

/* Data path limits (e810_rxq.c / e810_txq.c) */
#define E810_RX_MAX_FRAME       16384   /* > any rxmax (14 bits) */
#define E810_TX_MAX_DESCS       128     /* descriptors of one Tx frame */
#define E810_TX_MAX_FRAME       16384   /* bytes of a non-TSO Tx frame */
#define E810_TX_MAX_TSO         (256 * 1024)
#define E810_ITR_NONE           3       /* ITR_INDX "no ITR" */

#include "e810_fault.h"

/* Control queues: AQ (PF <-> FW) and mailbox, each a send and a receive ring */
enum {
    E810_CQ_ATQ,
    E810_CQ_ARQ,
    E810_CQ_MBX_ATQ,
    E810_CQ_MBX_ARQ,
    E810_CQ_NUM
};

/* the largest indirect buffer of an admin command */
#define E810_AQ_BUF_MAX         4096

/* register kinds of one control queue (PF_FW_xxBAL .. PF_FW_xxT) */
enum {
    E810_CQ_REG_BAL,
    E810_CQ_REG_BAH,
    E810_CQ_REG_LEN,
    E810_CQ_REG_H,
    E810_CQ_REG_T,
};

typedef struct E810CtlQ {
    uint32_t bal;
    uint32_t bah;
    uint32_t len;
    uint32_t head;
    uint32_t tail;
} E810CtlQ;

/* NVM: a generated flash image and its shadow RAM (e810_nvm.c) */
#define E810_NVM_FLASH_SIZE     0x10000         /* bytes */
#define E810_NVM_SR_WORDS       0x8000          /* GLNVM_GENS.SR_SIZE = 6 */

/* Resource ownership (0x0008 / 0x0009) */
#define E810_NUM_RES            8

/* Scheduler tree (e810_sched.c) */
#define E810_SCHED_MAX_NODES    512
#define E810_SCHED_NUM_LAYERS   9
#define E810_SCHED_SIBL_GRP_SZ  8
#define E810_SCHED_ELEM_DATA    16

typedef struct E810SchedNode {
    uint32_t teid;
    uint32_t parent_teid;
    uint8_t in_use;
    uint8_t elem_type;
    uint8_t layer;                          /* parent's layer + 1 */
    uint8_t data[E810_SCHED_ELEM_DATA];     /* struct ice_aqc_txsched_elem */
    uint16_t txq_id;                        /* LEAF nodes: the LAN queue */
} E810SchedNode;

/* Switch: VSIs, allocated resources, rules (e810_switch.c) */
#define E810_MAX_VSI            768
#define E810_NUM_VSI_TRACKED    16
#define E810_VSI_PROPS_SIZE     128
#define E810_MAX_SW_RULES       256
#define E810_MAX_RES_ALLOC      256

typedef struct E810Vsi {
    uint8_t in_use;
    uint16_t vsi_num;
    uint8_t props[E810_VSI_PROPS_SIZE];     /* struct ice_aqc_vsi_props */
} E810Vsi;

/*
 * hdr: a lookup rule's first 16 header bytes (the destination MAC first);
 * a VSI list's members: hdr[0] their count, then up to
 * E810_VSI_LIST_MEMBERS VSI numbers (little endian) from hdr[2]
 */
#define E810_VSI_LIST_MEMBERS   7

typedef struct E810SwRule {
    uint8_t in_use;
    uint16_t index;                         /* lookup index or list id */
    uint16_t type;                          /* ICE_AQC_SW_RULES_T_* */
    uint32_t act;
    uint8_t hdr[16];
} E810SwRule;

typedef struct E810ResAlloc {
    uint8_t in_use;
    uint16_t res_type;
    uint16_t id;
} E810ResAlloc;

/* Link/PHY state (e810_link.c) */
typedef struct E810Link {
    bool lse_enabled;                       /* link-status events on ARQ */
    uint16_t event_mask;                    /* 0x0613: set bits mask */
    /* active PHY configuration (0x0601, answered for ACTIVE_CFG) */
    uint64_t phy_type_low;
    uint64_t phy_type_high;
    uint8_t phy_caps;
    uint8_t low_power_ctrl_an;
    uint16_t eee_cap;
    uint16_t eeer;
    uint8_t link_fec_opt;
    uint8_t module_compliance_enforcement;
    bool phy_cfg_set;
    uint16_t max_frame_size;                /* 0x0603 */
    bool mac_loopback;                      /* 0x0620 ICE_AQ_MAC_LB_EN */
} E810Link;

/* Firmware logging configuration (e810_fwlog.c) */
#define E810_FWLOG_MODULES              32      /* ICE_AQC_FW_LOG_ID_MAX */
#define E810_FWLOG_DEFAULT_RESOLUTION   10
#define E810_FWLOG_LEVELS               5       /* NONE .. VERBOSE */

typedef struct E810FwLog {
    uint8_t level[E810_FWLOG_MODULES];      /* enum ice_fwlog_level */
    uint16_t resolution;
    bool uart_en;
    bool aq_en;
    bool registered;
} E810FwLog;

typedef struct E810Core E810Core;

/*
 * What the Rx parser found in a frame (e810_rx_classify()): the packet
 * type the descriptor reports and the RSS block hashes by, and where the
 * headers the RSS field vectors name start.
 */
typedef struct E810RxParsed {
    uint16_t ptype;                     /* ICE_PTYPE_* (e810_wire.h) */
    int etype;                          /* offset of the (last) EtherType */
    int l3, l4;                         /* header offsets, -1 if absent */
    bool v6;
    uint8_t l4proto;                    /* IP_PROTO_* when l4 >= 0 */
} E810RxParsed;

/* per-vector ITR timer context (e810_intr.c) */
typedef struct E810IntrTimer {
    E810Core *core;
    uint32_t vector;
} E810IntrTimer;

struct E810Core {
    /* wiring, set up by the front-end before e810_core_realize() */
    PCIDevice *owner;
    NICState *nic;
    NICConf *conf;
    uint32_t msix_vectors;

    /* reset/firmware-visible state */
    uint32_t glgen_rstat;
    uint32_t reset_type;        /* core/global/EMP reset in progress, 0: none */
    QEMUTimer *reset_timer;     /* ... completes it (e810_core.c) */
    uint32_t glnvm_uld;
    uint32_t gl_mdck_tx_tdpu;
    uint32_t pfqf_fd_ena;
    uint32_t pfpm_wus;
    uint32_t pfpm_wufc;
    uint32_t pfpm_apm;
    uint32_t gl_preext_l2_pmask[2];
    uint32_t glqf_hmask[GLQF_HMASK_MAX_INDEX + 1];
    uint32_t glqf_hmask_sel[GLQF_HMASK_SEL_MAX_INDEX + 1];
    uint32_t glqf_fdmask[GLQF_FDMASK_MAX_INDEX + 1];
    uint32_t glqf_fdmask_sel[GLQF_HMASK_SEL_MAX_INDEX + 1];

    /* control queues */
    E810CtlQ cq[E810_CQ_NUM];

    /* interrupts (e810_intr.c) */
    uint32_t glint_ctl;
    uint32_t pfint_oicr;
    uint32_t pfint_oicr_ena;
    uint32_t pfint_oicr_ctl;
    uint32_t pfint_fw_ctl;
    uint32_t pfint_mbx_ctl;
    uint32_t pfint_sb_ctl;
    uint32_t pfint_tsyn_msk;
    uint32_t glint_dyn_ctl[E810_MAX_VECTORS];
    uint32_t glint_itr[3][E810_MAX_VECTORS];
    uint32_t glint_rate[E810_MAX_VECTORS];
    uint32_t glint_vect2func[E810_MAX_VECTORS];
    uint8_t intr_pending[E810_MAX_VECTORS];

    /* LAN queues (e810_rxq.c / e810_txq.c) */
    uint32_t qint_rqctl[E810_NUM_QUEUES];
    uint32_t qint_tqctl[E810_NUM_QUEUES];
    uint32_t qrx_ctrl[E810_NUM_QUEUES];
    uint32_t qrx_context[E810_QRX_CONTEXT_DWORDS][E810_NUM_QUEUES];
    uint32_t qrx_tail[E810_NUM_QUEUES];
    uint32_t qrx_itr[E810_NUM_QUEUES];
    uint32_t qrxflxp_cntxt[E810_NUM_QUEUES];
    uint32_t qtx_comm_dbell[E810_NUM_QUEUES];
    uint32_t qtx_comm_head[E810_NUM_QUEUES];
    uint8_t txq_enabled[E810_NUM_QUEUES];
    uint32_t txq_teid[E810_NUM_QUEUES];
    uint8_t txq_ctx[E810_NUM_QUEUES][22];   /* TLAN context from 0x0C30 */

    /* NVM (e810_nvm.c): regenerated at realize, not migrated */
    uint8_t *nvm_flash;
    uint16_t *nvm_sr;

    /* resource ownership (0x0008/0x0009), indexed by ice_aq_res_ids */
    uint8_t res_owned[E810_NUM_RES];
    uint8_t res_access[E810_NUM_RES];

    /* scheduler (e810_sched.c) */
    E810SchedNode sched[E810_SCHED_MAX_NODES];
    uint32_t sched_next_teid;

    /* switch (e810_switch.c) */
    E810Vsi vsi[E810_NUM_VSI_TRACKED];
    E810SwRule rules[E810_MAX_SW_RULES];
    uint16_t next_rule_index;
    E810ResAlloc res_alloc[E810_MAX_RES_ALLOC];
    uint16_t next_res_id;
    uint16_t next_vsi_num;
    bool port_params_set;

    /* link (e810_link.c) */
    E810Link link;

    /* firmware logging (e810_fwlog.c) */
    E810FwLog fwlog;

    /* DCB/LLDP agent (e810_dcb.c): 0x0A01 MIB change events enabled */
    bool lldp_mib_change;

    /* driver version and firmware-version answers */
    uint8_t drv_ver[4];
    uint8_t api_major;
    uint8_t api_minor;
    uint8_t api_patch;

    /* log-once bookkeeping for unimplemented registers */
    GHashTable *unimp_logged;

    /* DDP package, flexible pipeline, RSS (e810_ddp.c, e810_rss.c) */
    uint32_t num_queues;                    /* 'queues' property */
    E810Ddp ddp;
    E810Flex flex;
    E810Rss rss;

    /* data path (e810_rxq.c, e810_txq.c, e810_intr.c) */
    uint32_t rxq_head[E810_NUM_QUEUES];     /* device's Rx head */
    uint8_t rxq_ctx_warned[E810_NUM_QUEUES];
    uint8_t txq_skip[E810_NUM_QUEUES];      /* dropping up to an EOP */
    uint32_t rx_drops;                      /* PRTRPB_RDPC */
    uint64_t rx_packets;
    uint64_t tx_packets;
    uint64_t tx_drops;
    uint64_t intr_count;
    uint8_t intr_itr_mask[E810_MAX_VECTORS];    /* ITR idx of pending */
    int64_t intr_holdoff[E810_MAX_VECTORS];     /* QEMU_CLOCK_VIRTUAL ns */
    QEMUTimer *itr_timer[E810_MAX_VECTORS];
    E810IntrTimer *itr_timer_ctx;
    struct NetRxPkt *rx_pkt;
    uint8_t *rx_frame;                      /* E810_RX_MAX_FRAME + 4 */
    struct NetTxPkt *tx_pkt;
    struct E810TxFrame *tx_frame_p;

    /* fault injection over QMP and the global reset sequence */
    E810Fault fault;
};

/*
 * A bit field of a queue context (RLAN/TLAN) as the driver packs it:
 * ``width`` bits from bit ``lsb``, little-endian, bytes past ``ctx_len``
 * read as zero.
 */
static inline uint64_t e810_ctx_bits(const uint8_t *ctx, size_t ctx_len,
                                     unsigned lsb, unsigned width)
{
    uint64_t v = 0;
    unsigned byte = lsb / 8;

    for (unsigned i = 0; i < 8 && byte + i < ctx_len; i++) {
        v |= (uint64_t)ctx[byte + i] << (8 * i);
    }
    v >>= lsb % 8;
    return width >= 64 ? v : v & ((1ULL << width) - 1);
}

/* e810_regs.c */
extern const MemoryRegionOps e810_mmio_ops;
void e810_regs_reset(E810Core *core);
void e810_regs_init(E810Core *core);
void e810_regs_cleanup(E810Core *core);

/* e810.c: the device a QMP command's optional 'id' names */
E810Core *e810_core_find(const char *id, Error **errp);

/* e810_core.c */
void e810_core_realize(E810Core *core);
void e810_core_unrealize(E810Core *core);
void e810_core_reset(E810Core *core);
void e810_core_pf_reset(E810Core *core);
void e810_core_global_reset(E810Core *core, uint32_t type);

/* e810_intr.c */
void e810_intr_reset(E810Core *core);
void e810_intr_oicr_set(E810Core *core, uint32_t cause);
void e810_intr_fw_event(E810Core *core);
bool e810_intr_spurious(E810Core *core, uint32_t vector);
void e810_intr_dyn_ctl_write(E810Core *core, uint32_t vector, uint32_t val);
uint32_t e810_intr_oicr_read(E810Core *core);
void e810_intr_queue_cause(E810Core *core, uint32_t ctl, bool tx, uint32_t q);
void e810_intr_post_load(E810Core *core);
void e810_intr_realize(E810Core *core);
void e810_intr_unrealize(E810Core *core);

/* e810_adminq.c */
void e810_adminq_reset(E810Core *core);
uint32_t e810_cq_read(E810Core *core, uint32_t q, uint32_t reg);
void e810_cq_write(E810Core *core, uint32_t q, uint32_t reg, uint32_t val);
void e810_atq_release(E810Core *core);
const char *e810_aq_opcode_name(uint16_t opcode);
bool e810_arq_post(E810Core *core, uint16_t opcode, uint16_t retval,
                   const union ice_aq_params *params, const void *buf,
                   uint16_t len);

/* e810_switch.c: the VSIs a frame with destination MAC 'da' goes to */
#define E810_RX_MAX_VSIS        E810_NUM_VSI_TRACKED
unsigned e810_switch_lookup_vsis(E810Core *core, const uint8_t *da,
                                 uint16_t *vsis);

/* e810_rxq.c */
void e810_rxq_reset(E810Core *core);
void e810_rx_loopback(E810Core *core, const struct iovec *iov, int iovcnt);
void e810_rxq_ctrl_write(E810Core *core, uint32_t q, uint32_t val);
void e810_rxq_tail_write(E810Core *core, uint32_t q, uint32_t val);
bool e810_rx_can_receive(E810Core *core);
ssize_t e810_rx_receive(E810Core *core, const struct iovec *iov, int iovcnt);
void e810_rx_classify(const uint8_t *frame, size_t len, E810RxParsed *p);
bool e810_rxq_inject(E810Core *core, uint32_t q, const uint8_t *buf,
                     size_t size, Error **errp);
void e810_rxq_realize(E810Core *core);
void e810_rxq_unrealize(E810Core *core);

/* e810_txq.c */
void e810_txq_reset(E810Core *core);
void e810_txq_dbell_write(E810Core *core, uint32_t q, uint32_t val);
void e810_txq_kick(E810Core *core, uint32_t q);
void e810_txq_realize(E810Core *core);
void e810_txq_unrealize(E810Core *core);

/* e810_fwlog.c */
void e810_fwlog_reset(E810Core *core);
bool e810_fwlog_is_default(E810Core *core);

/* e810_link.c */
bool e810_link_is_up(E810Core *core);
void e810_link_status_changed(E810Core *core);
void e810_link_fault_down(E810Core *core, bool down);

#endif

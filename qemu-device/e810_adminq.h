/*
 * QEMU Intel E810 ("ice") Ethernet controller: admin queue commands
 *
 * The descriptor, the command parameters and the buffers are the
 * structures of e810_wire.h (struct ice_aq_desc, struct ice_aqc_*).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_NET_E810_ADMINQ_H
#define HW_NET_E810_ADMINQ_H

#include "e810_core.h"
#include "e810_wire.h"

/* One admin command being executed */
typedef struct E810AqCmd {
    uint16_t flags;             /* host order, from the descriptor */
    uint16_t opcode;
    uint16_t datalen;           /* request: size of the guest's buffer */
    uint16_t retval;
    union ice_aq_params params; /* little endian; handlers answer here */
    uint8_t *buf;               /* E810_AQ_BUF_MAX bytes; NULL if no BUF */
    uint16_t buf_len;           /* == datalen when BUF is set */
    uint16_t resp_len;          /* bytes of buf returned (<= buf_len) */
    bool buf_wb;                /* write buf back to the guest */
} E810AqCmd;

/* Handlers return an ice_aq_err code and may edit params/buf/resp_len */
typedef uint16_t (*E810AqHandler)(E810Core *core, E810AqCmd *cmd);

/* The VSI context a VSI keeps (E810Vsi.props) */
static inline struct ice_aqc_vsi_props *e810_vsi_props(E810Vsi *v)
{
    QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_vsi_props) !=
                      sizeof_field(E810Vsi, props));
    return (struct ice_aqc_vsi_props *)v->props;
}

/* A command that needs a buffer of at least 'min' bytes */
bool e810_aq_need_buf(E810AqCmd *cmd, uint16_t min);

/* e810_nvm.c */
void e810_nvm_realize(E810Core *core);
void e810_nvm_unrealize(E810Core *core);
uint16_t e810_aq_req_res(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_release_res(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_nvm_read(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_nvm_checksum(E810Core *core, E810AqCmd *cmd);
void e810_res_reset(E810Core *core);

/* e810_fwlog.c */
uint16_t e810_aq_fwlog_config(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_fwlog_register(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_fwlog_query(E810Core *core, E810AqCmd *cmd);

/* e810_dcb.c */
uint16_t e810_aq_lldp_get_mib(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_lldp_set_mib_change(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_get_cee_dcb_cfg(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_query_port_ets(E810Core *core, E810AqCmd *cmd);

/* e810_caps.c */
uint16_t e810_aq_list_caps(E810Core *core, E810AqCmd *cmd);

/* e810_sched.c */
void e810_sched_reset(E810Core *core);
uint16_t e810_aq_query_sched_res(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_get_dflt_topo(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_add_sched_elems(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_cfg_sched_elems(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_get_sched_elems(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_move_sched_elems(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_suspend_resume_sched_elems(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_delete_sched_elems(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_rl_profiles(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_get_tx_topo(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_set_tx_topo(E810Core *core, E810AqCmd *cmd);
E810SchedNode *e810_sched_find(E810Core *core, uint32_t teid);
E810SchedNode *e810_sched_root(E810Core *core);
E810SchedNode *e810_sched_tc0(E810Core *core);
E810SchedNode *e810_sched_add_leaf(E810Core *core, uint32_t parent_teid,
                                   uint16_t txq_id,
                                   const struct ice_aqc_txsched_elem *info);
void e810_sched_remove(E810Core *core, E810SchedNode *node);

/* e810_switch.c */
void e810_switch_reset(E810Core *core);
void e810_switch_reset_all(E810Core *core);
uint16_t e810_aq_get_sw_cfg(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_set_port_params(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_alloc_free_res(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_add_vsi(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_update_vsi(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_free_vsi(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_sw_rules(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_clear_pf_cfg(E810Core *core, E810AqCmd *cmd);

/* e810_link.c */
void e810_link_reset(E810Core *core);
uint16_t e810_aq_manage_mac_read(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_manage_mac_write(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_get_phy_caps(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_set_phy_cfg(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_set_mac_cfg(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_restart_an(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_get_link_status(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_set_event_mask(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_set_mac_lb(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_get_port_options(E810Core *core, E810AqCmd *cmd);

/* e810_txq.c */
uint16_t e810_aq_add_txqs(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_dis_txqs(E810Core *core, E810AqCmd *cmd);

#endif

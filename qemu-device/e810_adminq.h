/*
 * QEMU Intel E810 ("ice") Ethernet controller: admin queue commands
 *
 * Descriptor layout and return codes follow the Linux driver's
 * ice_adminq_cmd.h (struct ice_aq_desc, enum ice_aq_err).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_NET_E810_ADMINQ_H
#define HW_NET_E810_ADMINQ_H

#include "e810_core.h"

/* struct ice_aq_desc flags (ICE_AQ_FLAG_*) */
#define ICE_AQ_FLAG_DD          0x0001
#define ICE_AQ_FLAG_CMP         0x0002
#define ICE_AQ_FLAG_ERR         0x0004
#define ICE_AQ_FLAG_LB          0x0200
#define ICE_AQ_FLAG_RD          0x0400
#define ICE_AQ_FLAG_BUF         0x1000
#define ICE_AQ_FLAG_SI          0x2000

/* enum ice_aq_err */
#define ICE_AQ_RC_OK            0
#define ICE_AQ_RC_EPERM         1
#define ICE_AQ_RC_ENOENT        2
#define ICE_AQ_RC_ENOMEM        9
#define ICE_AQ_RC_EBUSY         12
#define ICE_AQ_RC_EEXIST        13
#define ICE_AQ_RC_EINVAL        14
#define ICE_AQ_RC_ENOSPC        16
#define ICE_AQ_RC_ENOSYS        17
#define ICE_AQ_RC_EMODE         21

/* One admin command being executed */
typedef struct E810AqCmd {
    uint16_t flags;
    uint16_t opcode;
    uint16_t datalen;           /* request: size of the guest's buffer */
    uint16_t retval;
    uint32_t cookie_high;
    uint32_t cookie_low;
    uint8_t params[16];         /* command-specific, little endian */
    uint8_t *buf;               /* E810_AQ_BUF_MAX bytes; NULL if no BUF */
    uint16_t buf_len;           /* == datalen when BUF is set */
    uint16_t resp_len;          /* bytes of buf returned (<= buf_len) */
    bool buf_wb;                /* write buf back to the guest */
} E810AqCmd;

/* Handlers return an ice_aq_err code and may edit params/buf/resp_len */
typedef uint16_t (*E810AqHandler)(E810Core *core, E810AqCmd *cmd);

/* little-endian accessors for params and buffers */
static inline uint16_t e810_le16(const uint8_t *p)
{
    return p[0] | (p[1] << 8);
}

static inline uint32_t e810_le32(const uint8_t *p)
{
    return p[0] | (p[1] << 8) | (p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint64_t e810_le64(const uint8_t *p)
{
    return e810_le32(p) | ((uint64_t)e810_le32(p + 4) << 32);
}

static inline void e810_st16(uint8_t *p, uint16_t v)
{
    p[0] = v;
    p[1] = v >> 8;
}

static inline void e810_st32(uint8_t *p, uint32_t v)
{
    p[0] = v;
    p[1] = v >> 8;
    p[2] = v >> 16;
    p[3] = v >> 24;
}

static inline void e810_st64(uint8_t *p, uint64_t v)
{
    e810_st32(p, v);
    e810_st32(p + 4, v >> 32);
}

/* A command that needs a buffer of at least 'min' bytes */
bool e810_aq_need_buf(E810AqCmd *cmd, uint16_t min);

/* e810_nvm.c */
void e810_nvm_realize(E810Core *core);
void e810_nvm_unrealize(E810Core *core);
uint16_t e810_aq_req_res(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_release_res(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_nvm_read(E810Core *core, E810AqCmd *cmd);
void e810_res_reset(E810Core *core);

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
E810SchedNode *e810_sched_find(E810Core *core, uint32_t teid);
E810SchedNode *e810_sched_add_leaf(E810Core *core, uint32_t parent_teid,
                                   uint16_t txq_id, const uint8_t *info);
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
uint16_t e810_aq_get_port_options(E810Core *core, E810AqCmd *cmd);

/* e810_txq.c */
uint16_t e810_aq_add_txqs(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_dis_txqs(E810Core *core, E810AqCmd *cmd);

#endif

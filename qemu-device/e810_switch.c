/*
 * QEMU Intel E810 ("ice") Ethernet controller: switch, VSIs and resources
 *
 * The embedded switch is modelled as bookkeeping: the port configuration
 * (0x0200/0x0203), VSIs with their 128-byte property blocks (0x0210,
 * 0x0211, 0x0213), switch resources such as VSI lists and counters
 * (0x0208/0x0209) and switch rules (0x02A0..0x02A2), each rule getting an
 * index the driver later removes it by.  Rules are recorded but not yet
 * used to steer frames.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "e810_core.h"
#include "e810_adminq.h"
#include "e810_ddp.h"
#include "e810_rss.h"
#include "trace.h"

#define ICE_AQ_VSI_NUM_M                0x03FF
#define ICE_AQ_VSI_IS_VALID             0x8000
#define ICE_AQC_GET_SW_CONF_RESP_PHYS_PORT  0

/* switch rule types (struct ice_aqc_sw_rules_elem_hdr) */
#define ICE_AQC_SW_RULES_T_LKUP_RX          0x0
#define ICE_AQC_SW_RULES_T_LKUP_TX          0x1
#define ICE_AQC_SW_RULES_T_LG_ACT           0x2
#define ICE_AQC_SW_RULES_T_VSI_LIST_SET     0x3
#define ICE_AQC_SW_RULES_T_VSI_LIST_CLEAR   0x4
#define ICE_AQC_SW_RULES_T_PRUNE_LIST_SET   0x5
#define ICE_AQC_SW_RULES_T_PRUNE_LIST_CLEAR 0x6

#define ICE_AQC_RES_TYPE_M                  0x7F
#define ICE_AQC_RES_TYPE_FDIR_COUNTER_BLOCK 0x21
#define ICE_AQC_RES_TYPE_FDIR_GUARANTEED_ENTRIES 0x22
#define ICE_AQC_RES_TYPE_FDIR_SHARED_ENTRIES 0x23
#define ICE_AQC_RES_TYPE_FLAG_SCAN_BOTTOM   0x1000

/* 0x0200 get_sw_cfg: one element, the physical port of this PF */
uint16_t e810_aq_get_sw_cfg(E810Core *core, E810AqCmd *cmd)
{
    if (!e810_aq_need_buf(cmd, 6)) {
        return ICE_AQ_RC_EINVAL;
    }
    memset(cmd->buf, 0, 6);
    e810_st16(cmd->buf + 0, 0 |         /* logical port 0 */
              (ICE_AQC_GET_SW_CONF_RESP_PHYS_PORT << 14));
    e810_st16(cmd->buf + 2, 0);         /* swid */
    e810_st16(cmd->buf + 4, PCI_FUNC(core->owner->devfn));
    e810_st16(cmd->params + 2, 0);      /* no continuation */
    e810_st16(cmd->params + 4, 1);      /* num_elems */
    cmd->resp_len = 6;
    return ICE_AQ_RC_OK;
}

/* 0x0203 set_port_params */
uint16_t e810_aq_set_port_params(E810Core *core, E810AqCmd *cmd)
{
    core->port_params_set = true;
    return ICE_AQ_RC_OK;
}

static E810Vsi *e810_vsi_find(E810Core *core, uint16_t vsi_num)
{
    for (int i = 0; i < E810_NUM_VSI_TRACKED; i++) {
        if (core->vsi[i].in_use && core->vsi[i].vsi_num == vsi_num) {
            return &core->vsi[i];
        }
    }
    return NULL;
}

static unsigned e810_vsi_count(E810Core *core)
{
    unsigned n = 0;

    for (int i = 0; i < E810_NUM_VSI_TRACKED; i++) {
        n += core->vsi[i].in_use;
    }
    return n;
}

static uint16_t e810_vsi_resp(E810Core *core, E810AqCmd *cmd, uint16_t num)
{
    unsigned used = e810_vsi_count(core);

    memset(cmd->params, 0, 8);
    e810_st16(cmd->params + 0, num);
    e810_st16(cmd->params + 4, used);
    e810_st16(cmd->params + 6, E810_NUM_VSI_TRACKED - used);
    return ICE_AQ_RC_OK;
}

/* 0x0210 add_vsi */
uint16_t e810_aq_add_vsi(E810Core *core, E810AqCmd *cmd)
{
    E810Vsi *v = NULL;

    if (!e810_aq_need_buf(cmd, E810_VSI_PROPS_SIZE)) {
        return ICE_AQ_RC_EINVAL;
    }
    for (int i = 0; i < E810_NUM_VSI_TRACKED; i++) {
        if (!core->vsi[i].in_use) {
            v = &core->vsi[i];
            break;
        }
    }
    if (!v) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: 0x0210 out of VSIs (%u)\n",
                      E810_NUM_VSI_TRACKED);
        return ICE_AQ_RC_ENOSPC;
    }
    /* pick an unused hardware VSI number */
    for (int tries = 0; tries < E810_MAX_VSI; tries++) {
        uint16_t num = core->next_vsi_num;

        core->next_vsi_num = (core->next_vsi_num + 1) % E810_MAX_VSI;
        if (!e810_vsi_find(core, num)) {
            v->vsi_num = num;
            break;
        }
    }
    v->in_use = 1;
    memcpy(v->props, cmd->buf, E810_VSI_PROPS_SIZE);
    e810_rss_vsi_added(core, v - core->vsi);
    trace_e810_vsi_add(v->vsi_num, e810_le16(cmd->params + 6) & 3);
    return e810_vsi_resp(core, cmd, v->vsi_num);
}

/*
 * struct ice_aqc_vsi_props sections: ICE_AQ_VSI_PROP_*_VALID bit and the
 * bytes it covers
 */
static const struct {
    uint16_t bit;
    uint8_t start, len;
} e810_vsi_sections[] = {
    { 1u << 0, 2, 4 },          /* switch */
    { 1u << 1, 6, 2 },          /* security */
    { 1u << 2, 8, 8 },          /* VLAN */
    { 1u << 3, 24, 4 },         /* outer tag */
    { 1u << 4, 16, 4 },         /* ingress UP */
    { 1u << 5, 20, 4 },         /* egress UP */
    { 1u << 6, 28, 50 },        /* Rx queue map */
    { 1u << 7, 78, 6 },         /* queueing options (RSS LUT, hash) */
    { 1u << 8, 84, 4 },         /* outer UP */
    { 1u << 11, 90, 10 },       /* flow director */
    { 1u << 12, 100, 4 },       /* PASID */
};

static void e810_vsi_merge(uint8_t *props, const uint8_t *upd)
{
    uint16_t valid = e810_le16(upd);

    for (size_t i = 0; i < ARRAY_SIZE(e810_vsi_sections); i++) {
        if (valid & e810_vsi_sections[i].bit) {
            memcpy(props + e810_vsi_sections[i].start,
                   upd + e810_vsi_sections[i].start,
                   e810_vsi_sections[i].len);
        }
    }
    e810_st16(props, e810_le16(props) | valid);
}

/* 0x0211 update_vsi: the valid_sections of the buffer replace ours */
uint16_t e810_aq_update_vsi(E810Core *core, E810AqCmd *cmd)
{
    uint16_t num = e810_le16(cmd->params) & ICE_AQ_VSI_NUM_M;
    E810Vsi *v = e810_vsi_find(core, num);

    if (!e810_aq_need_buf(cmd, E810_VSI_PROPS_SIZE)) {
        return ICE_AQ_RC_EINVAL;
    }
    if (!v) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: 0x0211 of unknown VSI %u\n",
                      num);
        return ICE_AQ_RC_ENOENT;
    }
    e810_vsi_merge(v->props, cmd->buf);
    trace_e810_vsi_update(num, e810_le16(cmd->buf));
    return e810_vsi_resp(core, cmd, num);
}

/* 0x0213 free_vsi */
uint16_t e810_aq_free_vsi(E810Core *core, E810AqCmd *cmd)
{
    uint16_t num = e810_le16(cmd->params) & ICE_AQ_VSI_NUM_M;
    E810Vsi *v = e810_vsi_find(core, num);

    if (!v) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: 0x0213 of unknown VSI %u\n",
                      num);
        return ICE_AQ_RC_ENOENT;
    }
    v->in_use = 0;
    trace_e810_vsi_free(num);
    return e810_vsi_resp(core, cmd, num);
}

/* 0x0208 alloc_res / 0x0209 free_res: {res_type, num_elems, elem[]} */
uint16_t e810_aq_alloc_free_res(E810Core *core, E810AqCmd *cmd)
{
    bool alloc = cmd->opcode == 0x0208;
    uint16_t type, num;
    int pool;

    if (!e810_aq_need_buf(cmd, 4)) {
        return ICE_AQ_RC_EINVAL;
    }
    type = e810_le16(cmd->buf) & ICE_AQC_RES_TYPE_M;
    num = e810_le16(cmd->buf + 2);
    if (type != ICE_AQC_RES_TYPE_FDIR_GUARANTEED_ENTRIES &&
        type != ICE_AQC_RES_TYPE_FDIR_SHARED_ENTRIES &&
        4 + (uint32_t)num * 2 > cmd->buf_len) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: 0x%04x of %u resources overruns the buffer\n",
                      cmd->opcode, num);
        return ICE_AQ_RC_EINVAL;
    }
    if (type == ICE_AQC_RES_TYPE_FDIR_GUARANTEED_ENTRIES ||
        type == ICE_AQC_RES_TYPE_FDIR_SHARED_ENTRIES) {
        /* a count of entries, one element answered (ice_alloc_res_cntr) */
        if (cmd->buf_len < 6 || !num) {
            return ICE_AQ_RC_EINVAL;
        }
        if (e810_flex_fd_entries(core, type, alloc, num)) {
            return ICE_AQ_RC_ENOSPC;
        }
        if (alloc) {
            e810_st16(cmd->buf + 4, 0);
            trace_e810_res_alloc(type, num);
        } else {
            trace_e810_res_free(type, num);
        }
        cmd->buf_wb = alloc;
        return ICE_AQ_RC_OK;
    }
    if (e810_flex_res_type(type, &pool)) {
        /* profile IDs / TCAM entries: per-type pools (e810_ddp.c) */
        bool bottom = e810_le16(cmd->buf) & ICE_AQC_RES_TYPE_FLAG_SCAN_BOTTOM;

        for (uint16_t i = 0; i < num; i++) {
            uint8_t *e = cmd->buf + 4 + 2 * i;
            uint16_t id = e810_le16(e), rc;

            rc = alloc ? e810_flex_res_alloc(core, pool, bottom, &id)
                       : e810_flex_res_free(core, pool, id);
            if (rc) {
                return rc;
            }
            if (alloc) {
                e810_st16(e, id);
                trace_e810_res_alloc(type, id);
            } else {
                trace_e810_res_free(type, id);
            }
        }
        cmd->buf_wb = alloc;
        return ICE_AQ_RC_OK;
    }
    for (uint16_t i = 0; i < num; i++) {
        uint8_t *e = cmd->buf + 4 + 2 * i;
        E810ResAlloc *r = NULL;

        if (alloc) {
            for (int j = 0; j < E810_MAX_RES_ALLOC; j++) {
                if (!core->res_alloc[j].in_use) {
                    r = &core->res_alloc[j];
                    break;
                }
            }
            if (!r) {
                return ICE_AQ_RC_ENOSPC;
            }
            r->in_use = 1;
            r->res_type = type;
            r->id = core->next_res_id++;
            if (core->next_res_id >= 0x400) {   /* 10-bit list ids */
                core->next_res_id = 1;
            }
            e810_st16(e, r->id);
            trace_e810_res_alloc(type, r->id);
        } else {
            uint16_t id = e810_le16(e);

            for (int j = 0; j < E810_MAX_RES_ALLOC; j++) {
                if (core->res_alloc[j].in_use &&
                    core->res_alloc[j].res_type == type &&
                    core->res_alloc[j].id == id) {
                    r = &core->res_alloc[j];
                    break;
                }
            }
            if (!r) {
                qemu_log_mask(LOG_GUEST_ERROR,
                              "e810: free of unallocated resource type 0x%x "
                              "id %u\n", type, id);
                return ICE_AQ_RC_ENOENT;
            }
            r->in_use = 0;
            trace_e810_res_free(type, id);
        }
    }
    cmd->buf_wb = alloc;
    return ICE_AQ_RC_OK;
}

/* size of one rule in a 0x02A0..0x02A2 buffer, 0 if it does not fit */
static uint32_t e810_sw_rule_size(const uint8_t *r, uint32_t left)
{
    uint16_t type;
    uint32_t size;

    if (left < 8) {
        return 0;
    }
    type = e810_le16(r);
    switch (type) {
    case ICE_AQC_SW_RULES_T_LKUP_RX:
    case ICE_AQC_SW_RULES_T_LKUP_TX:
        if (left < 16) {
            return 0;
        }
        size = 16 + e810_le16(r + 14);          /* hdr_len */
        break;
    case ICE_AQC_SW_RULES_T_LG_ACT:
        size = 8 + 4 * e810_le16(r + 6);        /* size (actions) */
        break;
    case ICE_AQC_SW_RULES_T_VSI_LIST_SET:
    case ICE_AQC_SW_RULES_T_VSI_LIST_CLEAR:
    case ICE_AQC_SW_RULES_T_PRUNE_LIST_SET:
    case ICE_AQC_SW_RULES_T_PRUNE_LIST_CLEAR:
        size = 8 + 2 * e810_le16(r + 6);        /* number_vsi */
        break;
    default:
        return 0;
    }
    return size <= left ? size : 0;
}

static E810SwRule *e810_rule_find(E810Core *core, uint16_t type,
                                  uint16_t index)
{
    for (int i = 0; i < E810_MAX_SW_RULES; i++) {
        E810SwRule *r = &core->rules[i];

        if (r->in_use && r->index == index &&
            (r->type <= ICE_AQC_SW_RULES_T_LKUP_TX) ==
            (type <= ICE_AQC_SW_RULES_T_LKUP_TX)) {
            return r;
        }
    }
    return NULL;
}

/* 0x02A0 add / 0x02A1 update / 0x02A2 remove switch rules */
uint16_t e810_aq_sw_rules(E810Core *core, E810AqCmd *cmd)
{
    uint16_t nrules = e810_le16(cmd->params);
    uint32_t off = 0;

    if (!cmd->buf) {
        return ICE_AQ_RC_EINVAL;
    }
    for (uint16_t i = 0; i < nrules; i++) {
        uint8_t *p = cmd->buf + off;
        uint32_t size = e810_sw_rule_size(p, cmd->buf_len - off);
        uint16_t type;
        bool lkup;
        E810SwRule *r;

        if (!size) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: switch rule %u (type 0x%x) malformed or "
                          "beyond the buffer\n", i,
                          cmd->buf_len - off >= 2 ? e810_le16(p) : 0xFFFF);
            return ICE_AQ_RC_EINVAL;
        }
        type = e810_le16(p);
        lkup = type <= ICE_AQC_SW_RULES_T_LKUP_TX;
        switch (cmd->opcode) {
        case 0x02A0:
            if (type == ICE_AQC_SW_RULES_T_VSI_LIST_CLEAR ||
                type == ICE_AQC_SW_RULES_T_PRUNE_LIST_CLEAR) {
                /* clearing a list: drop our record of it */
                r = e810_rule_find(core, type, e810_le16(p + 4));
                if (r) {
                    r->in_use = 0;
                }
                break;
            }
            r = lkup ? NULL : e810_rule_find(core, type, e810_le16(p + 4));
            if (!r) {
                for (int j = 0; j < E810_MAX_SW_RULES; j++) {
                    if (!core->rules[j].in_use) {
                        r = &core->rules[j];
                        break;
                    }
                }
            }
            if (!r) {
                qemu_log_mask(LOG_GUEST_ERROR,
                              "e810: switch rule table full (%u)\n",
                              E810_MAX_SW_RULES);
                return ICE_AQ_RC_ENOSPC;
            }
            memset(r, 0, sizeof(*r));
            r->in_use = 1;
            r->type = type;
            if (lkup) {
                /* the device picks the lookup index: bytes 12..13 */
                r->index = core->next_rule_index++;
                if (core->next_rule_index >= 0x2000) {
                    core->next_rule_index = 1;
                }
                e810_st16(p + 12, r->index);
                r->act = e810_le32(p + 8);
                memcpy(r->hdr, p + 16, MIN(size - 16, sizeof(r->hdr)));
            } else {
                /* VSI/prune lists and large actions carry their index */
                r->index = e810_le16(p + 4);
            }
            trace_e810_sw_rule_add(type, r->index, r->act);
            break;
        case 0x02A1:
            r = e810_rule_find(core, type, e810_le16(p + (lkup ? 12 : 4)));
            if (!r) {
                return ICE_AQ_RC_ENOENT;
            }
            if (lkup) {
                r->act = e810_le32(p + 8);
            }
            trace_e810_sw_rule_update(type, r->index, r->act);
            break;
        case 0x02A2:
            r = e810_rule_find(core, type, e810_le16(p + (lkup ? 12 : 4)));
            if (!r) {
                return ICE_AQ_RC_ENOENT;
            }
            trace_e810_sw_rule_remove(type, r->index);
            r->in_use = 0;
            break;
        }
        off += size;
    }
    cmd->buf_wb = cmd->opcode == 0x02A0;
    return ICE_AQ_RC_OK;
}

/* 0x02A4 clear_pf_cfg: VSIs, rules, resources and Tx queues go away */
uint16_t e810_aq_clear_pf_cfg(E810Core *core, E810AqCmd *cmd)
{
    e810_switch_reset(core);
    e810_txq_reset(core);
    e810_sched_reset(core);
    return ICE_AQ_RC_OK;
}

/*
 * PF reset / clear PF config: VSIs, rules and switch resources go away.
 * Flow-director counter blocks stay: the driver allocates its block once
 * per probe (ice_init_hw()) and keeps using it across rebuilds.
 */
void e810_switch_reset(E810Core *core)
{
    memset(core->vsi, 0, sizeof(core->vsi));
    memset(core->rules, 0, sizeof(core->rules));
    for (int i = 0; i < E810_MAX_RES_ALLOC; i++) {
        E810ResAlloc *r = &core->res_alloc[i];

        if (r->res_type != ICE_AQC_RES_TYPE_FDIR_COUNTER_BLOCK) {
            r->in_use = 0;
        }
    }
    core->next_rule_index = 1;
    core->next_vsi_num = 1;
    core->port_params_set = false;
    /* profile IDs/TCAM entries freed, tables back to the package's */
    e810_ddp_pf_reset(core);
    e810_rss_reset(core);
}

/* device reset: every allocation goes */
void e810_switch_reset_all(E810Core *core)
{
    e810_switch_reset(core);
    memset(core->res_alloc, 0, sizeof(core->res_alloc));
    core->next_res_id = 1;
}

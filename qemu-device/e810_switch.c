/*
 * QEMU Intel E810 ("ice") Ethernet controller: switch, VSIs and resources
 *
 * The embedded switch is modelled as bookkeeping: the port configuration
 * (0x0200/0x0203), VSIs with their 128-byte property blocks (0x0210,
 * 0x0211, 0x0213), switch resources such as VSI lists and counters
 * (0x0208/0x0209) and switch rules (0x02A0..0x02A2), each rule getting an
 * index the driver later removes it by.  Frames from the wire are not
 * steered by them (RSS on the main VSI picks the queue, e810_rxq.c);
 * frames the MAC loops back (0x0620) are: e810_switch_lookup_vsis()
 * forwards by destination MAC to the VSI or VSI list of the matching
 * lookup rules.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "net/eth.h"
#include "e810_core.h"
#include "e810_adminq.h"
#include "e810_ddp.h"
#include "e810_rss.h"
#include "trace.h"

QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_vsi_props) != E810_VSI_PROPS_SIZE);

/* 0x0200 get_sw_cfg: one element, the physical port of this PF */
uint16_t e810_aq_get_sw_cfg(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_get_sw_cfg_resp_elem *e = (void *)cmd->buf;

    if (!e810_aq_need_buf(cmd, sizeof(*e))) {
        return ICE_AQ_RC_EINVAL;
    }
    *e = (struct ice_aqc_get_sw_cfg_resp_elem) {
        /* logical port 0, a physical port */
        .vsi_port_num = cpu_to_le16(ICE_AQC_GET_SW_CONF_RESP_PHYS_PORT <<
                                    ICE_AQC_GET_SW_CONF_RESP_TYPE_S),
        .swid = 0,
        .pf_vf_num = cpu_to_le16(PCI_FUNC(core->owner->devfn)),
    };
    cmd->params.get_sw_conf.element = 0;            /* no continuation */
    cmd->params.get_sw_conf.num_elems = cpu_to_le16(1);
    cmd->resp_len = sizeof(*e);
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
    struct ice_aqc_add_update_free_vsi_resp *r =
        &cmd->params.add_update_free_vsi_res;
    unsigned used = e810_vsi_count(core);

    /* addr_high/addr_low stay the buffer's */
    r->vsi_num = cpu_to_le16(num);
    r->ext_status = 0;
    r->vsi_used = cpu_to_le16(used);
    r->vsi_free = cpu_to_le16(E810_NUM_VSI_TRACKED - used);
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
    trace_e810_vsi_add(v->vsi_num, le16_to_cpu(cmd->params.vsi_cmd.vsi_flags) &
                       ICE_AQ_VSI_TYPE_M);
    return e810_vsi_resp(core, cmd, v->vsi_num);
}

/*
 * The sections of struct ice_aqc_vsi_props: ICE_AQ_VSI_PROP_*_VALID bit,
 * first and last field
 */
#define VSI_SECTION(bit, first, last) \
    { bit, offsetof(struct ice_aqc_vsi_props, first), \
      offsetof(struct ice_aqc_vsi_props, last) + \
      sizeof_field(struct ice_aqc_vsi_props, last) - \
      offsetof(struct ice_aqc_vsi_props, first) }

static const struct {
    uint16_t bit;
    uint8_t start, len;
} e810_vsi_sections[] = {
    VSI_SECTION(ICE_AQ_VSI_PROP_SW_VALID, sw_id, veb_stat_id),
    VSI_SECTION(ICE_AQ_VSI_PROP_SECURITY_VALID, sec_flags, sec_reserved),
    VSI_SECTION(ICE_AQ_VSI_PROP_VLAN_VALID, port_based_inner_vlan,
                inner_vlan_reserved2),
    VSI_SECTION(ICE_AQ_VSI_PROP_OUTER_TAG_VALID, port_based_outer_vlan,
                outer_tag_reserved),
    VSI_SECTION(ICE_AQ_VSI_PROP_INGRESS_UP_VALID, ingress_table,
                ingress_table),
    VSI_SECTION(ICE_AQ_VSI_PROP_EGRESS_UP_VALID, egress_table, egress_table),
    VSI_SECTION(ICE_AQ_VSI_PROP_RXQ_MAP_VALID, mapping_flags, tc_mapping),
    VSI_SECTION(ICE_AQ_VSI_PROP_Q_OPT_VALID, q_opt_rss, q_opt_reserved),
    VSI_SECTION(ICE_AQ_VSI_PROP_OUTER_UP_VALID, outer_up_table,
                outer_up_table),
    VSI_SECTION(ICE_AQ_VSI_PROP_FLOW_DIR_VALID, fd_options, fd_report_opt),
    VSI_SECTION(ICE_AQ_VSI_PROP_PASID_VALID, pasid_id, pasid_id),
};

static void e810_vsi_merge(uint8_t *props, const uint8_t *upd)
{
    struct ice_aqc_vsi_props *p = (void *)props;
    const struct ice_aqc_vsi_props *u = (const void *)upd;
    uint16_t valid = le16_to_cpu(u->valid_sections);

    for (size_t i = 0; i < ARRAY_SIZE(e810_vsi_sections); i++) {
        if (valid & e810_vsi_sections[i].bit) {
            memcpy(props + e810_vsi_sections[i].start,
                   upd + e810_vsi_sections[i].start,
                   e810_vsi_sections[i].len);
        }
    }
    p->valid_sections = cpu_to_le16(le16_to_cpu(p->valid_sections) | valid);
}

/* 0x0211 update_vsi: the valid_sections of the buffer replace ours */
uint16_t e810_aq_update_vsi(E810Core *core, E810AqCmd *cmd)
{
    uint16_t num = le16_to_cpu(cmd->params.vsi_cmd.vsi_num) & ICE_AQ_VSI_NUM_M;
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
    trace_e810_vsi_update(num, lduw_le_p(cmd->buf));
    return e810_vsi_resp(core, cmd, num);
}

/* 0x0213 free_vsi */
uint16_t e810_aq_free_vsi(E810Core *core, E810AqCmd *cmd)
{
    uint16_t num = le16_to_cpu(cmd->params.vsi_cmd.vsi_num) & ICE_AQ_VSI_NUM_M;
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

/*
 * Freeing a VSI (or prune) list resource frees the list with it: the
 * driver's ice_remove_vsi_list_rule() prepares a VSI_LIST_CLEAR rule but
 * sends only the free_res, so the list's record must go here or every
 * replaced list stays in the rule table until it is full.
 */
static void e810_vsi_list_release(E810Core *core, uint16_t res_type,
                                  uint16_t id)
{
    bool prune = res_type == ICE_AQC_RES_TYPE_VSI_LIST_PRUNE;

    for (int i = 0; i < E810_MAX_SW_RULES; i++) {
        E810SwRule *r = &core->rules[i];

        if (r->in_use && r->index == id &&
            (prune ? r->type == ICE_AQC_SW_RULES_T_PRUNE_LIST_SET ||
                     r->type == ICE_AQC_SW_RULES_T_PRUNE_LIST_CLEAR
                   : r->type == ICE_AQC_SW_RULES_T_VSI_LIST_SET ||
                     r->type == ICE_AQC_SW_RULES_T_VSI_LIST_CLEAR)) {
            trace_e810_sw_rule_remove(r->type, r->index);
            r->in_use = 0;
        }
    }
}

/* 0x0208 alloc_res / 0x0209 free_res: {res_type, num_elems, elem[]} */
uint16_t e810_aq_alloc_free_res(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_alloc_free_res_elem *r = (void *)cmd->buf;
    bool alloc = cmd->opcode == ice_aqc_opc_alloc_res;
    uint16_t type, num;
    int pool;

    if (!e810_aq_need_buf(cmd, sizeof(*r))) {
        return ICE_AQ_RC_EINVAL;
    }
    type = le16_to_cpu(r->res_type) & ICE_AQC_RES_TYPE_M;
    num = le16_to_cpu(r->num_elems);
    if (type != ICE_AQC_RES_TYPE_FDIR_GUARANTEED_ENTRIES &&
        type != ICE_AQC_RES_TYPE_FDIR_SHARED_ENTRIES &&
        sizeof(*r) + (uint32_t)num * sizeof(r->elem[0]) > cmd->buf_len) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: 0x%04x of %u resources overruns the buffer\n",
                      cmd->opcode, num);
        return ICE_AQ_RC_EINVAL;
    }
    if (type == ICE_AQC_RES_TYPE_FDIR_GUARANTEED_ENTRIES ||
        type == ICE_AQC_RES_TYPE_FDIR_SHARED_ENTRIES) {
        /* a count of entries, one element answered (ice_alloc_res_cntr) */
        if (cmd->buf_len < sizeof(*r) + sizeof(r->elem[0]) || !num) {
            return ICE_AQ_RC_EINVAL;
        }
        if (e810_flex_fd_entries(core, type, alloc, num)) {
            return ICE_AQ_RC_ENOSPC;
        }
        if (alloc) {
            r->elem[0] = 0;
            trace_e810_res_alloc(type, num);
        } else {
            trace_e810_res_free(type, num);
        }
        cmd->buf_wb = alloc;
        return ICE_AQ_RC_OK;
    }
    if (e810_flex_res_type(type, &pool)) {
        /* profile IDs / TCAM entries: per-type pools (e810_ddp.c) */
        bool bottom = le16_to_cpu(r->res_type) &
                      ICE_AQC_RES_TYPE_FLAG_SCAN_BOTTOM;

        for (uint16_t i = 0; i < num; i++) {
            uint16_t id = le16_to_cpu(r->elem[i]), rc;

            rc = alloc ? e810_flex_res_alloc(core, pool, bottom, &id)
                       : e810_flex_res_free(core, pool, id);
            if (rc) {
                return rc;
            }
            if (alloc) {
                r->elem[i] = cpu_to_le16(id);
                trace_e810_res_alloc(type, id);
            } else {
                trace_e810_res_free(type, id);
            }
        }
        cmd->buf_wb = alloc;
        return ICE_AQ_RC_OK;
    }
    for (uint16_t i = 0; i < num; i++) {
        E810ResAlloc *a = NULL;

        if (alloc) {
            for (int j = 0; j < E810_MAX_RES_ALLOC; j++) {
                if (!core->res_alloc[j].in_use) {
                    a = &core->res_alloc[j];
                    break;
                }
            }
            if (!a) {
                return ICE_AQ_RC_ENOSPC;
            }
            a->in_use = 1;
            a->res_type = type;
            a->id = core->next_res_id++;
            if (core->next_res_id >= 0x400) {   /* 10-bit list ids */
                core->next_res_id = 1;
            }
            r->elem[i] = cpu_to_le16(a->id);
            trace_e810_res_alloc(type, a->id);
        } else {
            uint16_t id = le16_to_cpu(r->elem[i]);

            for (int j = 0; j < E810_MAX_RES_ALLOC; j++) {
                if (core->res_alloc[j].in_use &&
                    core->res_alloc[j].res_type == type &&
                    core->res_alloc[j].id == id) {
                    a = &core->res_alloc[j];
                    break;
                }
            }
            if (!a) {
                qemu_log_mask(LOG_GUEST_ERROR,
                              "e810: free of unallocated resource type 0x%x "
                              "id %u\n", type, id);
                return ICE_AQ_RC_ENOENT;
            }
            a->in_use = 0;
            trace_e810_res_free(type, id);
            if (type == ICE_AQC_RES_TYPE_VSI_LIST_REP ||
                type == ICE_AQC_RES_TYPE_VSI_LIST_PRUNE) {
                e810_vsi_list_release(core, type, id);
            }
        }
    }
    cmd->buf_wb = alloc;
    return ICE_AQ_RC_OK;
}

/* size of one rule in a 0x02A0..0x02A2 buffer, 0 if it does not fit */
static uint32_t e810_sw_rule_size(const uint8_t *p, uint32_t left)
{
    const struct ice_sw_rule_lkup_rx_tx *lkup = (const void *)p;
    const struct ice_sw_rule_lg_act *lg_act = (const void *)p;
    const struct ice_sw_rule_vsi_list *vsi_list = (const void *)p;
    uint32_t size;

    /* every rule is at least a header, an index and a count */
    if (left < sizeof(*vsi_list)) {
        return 0;
    }
    switch (le16_to_cpu(vsi_list->hdr.type)) {
    case ICE_AQC_SW_RULES_T_LKUP_RX:
    case ICE_AQC_SW_RULES_T_LKUP_TX:
        if (left < sizeof(*lkup)) {
            return 0;
        }
        size = sizeof(*lkup) + le16_to_cpu(lkup->hdr_len);
        break;
    case ICE_AQC_SW_RULES_T_LG_ACT:
        size = sizeof(*lg_act) +
               le16_to_cpu(lg_act->size) * sizeof(lg_act->act[0]);
        break;
    case ICE_AQC_SW_RULES_T_VSI_LIST_SET:
    case ICE_AQC_SW_RULES_T_VSI_LIST_CLEAR:
    case ICE_AQC_SW_RULES_T_PRUNE_LIST_SET:
    case ICE_AQC_SW_RULES_T_PRUNE_LIST_CLEAR:
        size = sizeof(*vsi_list) +
               le16_to_cpu(vsi_list->number_vsi) * sizeof(vsi_list->vsi[0]);
        break;
    default:
        return 0;
    }
    return size <= left ? size : 0;
}

/*
 * The index a rule is known by: the device's answer for lookups, the
 * driver's own for VSI/prune lists and large actions
 */
QEMU_BUILD_BUG_ON(offsetof(struct ice_sw_rule_lg_act, index) !=
                  offsetof(struct ice_sw_rule_vsi_list, index));

static uint16_t e810_sw_rule_index(const uint8_t *p, bool lkup)
{
    if (lkup) {
        return le16_to_cpu(((const struct ice_sw_rule_lkup_rx_tx *)p)->index);
    }
    return le16_to_cpu(((const struct ice_sw_rule_vsi_list *)p)->index);
}

/* VSI_LIST_SET adds the rule's VSIs to list r, VSI_LIST_CLEAR removes them */
static void e810_vsi_list_edit(E810SwRule *r, const uint8_t *p, uint16_t type)
{
    const struct ice_sw_rule_vsi_list *l = (const void *)p;
    uint16_t n = le16_to_cpu(l->number_vsi);
    uint8_t cnt = MIN(r->hdr[0], E810_VSI_LIST_MEMBERS);

    if (type != ICE_AQC_SW_RULES_T_VSI_LIST_SET &&
        type != ICE_AQC_SW_RULES_T_VSI_LIST_CLEAR) {
        return;                         /* prune lists: not steering */
    }
    for (uint16_t i = 0; i < n; i++) {
        uint16_t vsi = le16_to_cpu(l->vsi[i]);
        int at = -1;

        for (int j = 0; j < cnt; j++) {
            if (lduw_le_p(&r->hdr[2 + 2 * j]) == vsi) {
                at = j;
            }
        }
        if (type == ICE_AQC_SW_RULES_T_VSI_LIST_CLEAR && at >= 0) {
            cnt--;
            stw_le_p(&r->hdr[2 + 2 * at], lduw_le_p(&r->hdr[2 + 2 * cnt]));
        } else if (type == ICE_AQC_SW_RULES_T_VSI_LIST_SET && at < 0) {
            if (cnt == E810_VSI_LIST_MEMBERS) {
                qemu_log_mask(LOG_UNIMP, "e810: VSI list %u: more than %u "
                              "VSIs, VSI %u not steered to\n", r->index,
                              E810_VSI_LIST_MEMBERS, vsi);
                continue;
            }
            stw_le_p(&r->hdr[2 + 2 * cnt], vsi);
            cnt++;
        }
    }
    r->hdr[0] = cnt;
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
    struct ice_aqc_sw_rules *prm = &cmd->params.sw_rules;
    uint16_t nrules = le16_to_cpu(prm->num_rules_fltr_entry_index);
    uint32_t off = 0;

    if (!cmd->buf) {
        return ICE_AQ_RC_EINVAL;
    }
    for (uint16_t i = 0; i < nrules; i++) {
        uint8_t *p = cmd->buf + off;
        struct ice_sw_rule_lkup_rx_tx *lk = (void *)p;
        uint32_t size = e810_sw_rule_size(p, cmd->buf_len - off);
        uint16_t type;
        bool lkup;
        E810SwRule *r;

        if (!size) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: switch rule %u (type 0x%x) malformed or "
                          "beyond the buffer\n", i,
                          cmd->buf_len - off >= 2 ? lduw_le_p(p) : 0xFFFF);
            return ICE_AQ_RC_EINVAL;
        }
        type = le16_to_cpu(lk->hdr.type);
        lkup = type <= ICE_AQC_SW_RULES_T_LKUP_TX;
        switch (cmd->opcode) {
        case ice_aqc_opc_add_sw_rules:
            if (type == ICE_AQC_SW_RULES_T_VSI_LIST_CLEAR ||
                type == ICE_AQC_SW_RULES_T_PRUNE_LIST_CLEAR) {
                /* clearing a list: drop our record of it */
                r = e810_rule_find(core, type, e810_sw_rule_index(p, false));
                if (r) {
                    r->in_use = 0;
                }
                break;
            }
            r = lkup ? NULL
                     : e810_rule_find(core, type, e810_sw_rule_index(p, false));
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
                /* the device picks the lookup index */
                r->index = core->next_rule_index++;
                if (core->next_rule_index >= 0x2000) {
                    core->next_rule_index = 1;
                }
                lk->index = cpu_to_le16(r->index);
                r->act = le32_to_cpu(lk->act);
                memcpy(r->hdr, lk->hdr_data,
                       MIN(size - sizeof(*lk), sizeof(r->hdr)));
            } else {
                /* VSI/prune lists and large actions carry their index */
                r->index = e810_sw_rule_index(p, false);
                e810_vsi_list_edit(r, p, type);
            }
            trace_e810_sw_rule_add(type, r->index, r->act);
            break;
        case ice_aqc_opc_update_sw_rules:
            r = e810_rule_find(core, type, e810_sw_rule_index(p, lkup));
            if (!r) {
                return ICE_AQ_RC_ENOENT;
            }
            if (lkup) {
                r->act = le32_to_cpu(lk->act);
            } else {
                e810_vsi_list_edit(r, p, type);
            }
            trace_e810_sw_rule_update(type, r->index, r->act);
            break;
        case ice_aqc_opc_remove_sw_rules:
            r = e810_rule_find(core, type, e810_sw_rule_index(p, lkup));
            if (!r) {
                return ICE_AQ_RC_ENOENT;
            }
            trace_e810_sw_rule_remove(type, r->index);
            r->in_use = 0;
            break;
        }
        off += size;
    }
    cmd->buf_wb = cmd->opcode == ice_aqc_opc_add_sw_rules;
    return ICE_AQ_RC_OK;
}

static void e810_lookup_add_vsi(E810Core *core, uint16_t vsi, uint16_t *vsis,
                                unsigned *n)
{
    if (!e810_vsi_find(core, vsi)) {
        return;
    }
    for (unsigned i = 0; i < *n; i++) {
        if (vsis[i] == vsi) {
            return;
        }
    }
    if (*n < E810_RX_MAX_VSIS) {
        vsis[(*n)++] = vsi;
    }
}

/*
 * The VSIs a frame with destination MAC 'da' is forwarded to: every valid
 * forward-to-VSI / forward-to-VSI-list lookup rule whose header starts
 * with 'da' (the MAC filters ice_fill_sw_rule() writes), each existing
 * VSI once; a drop rule drops.  Up to E810_RX_MAX_VSIS into vsis[].
 */
unsigned e810_switch_lookup_vsis(E810Core *core, const uint8_t *da,
                                 uint16_t *vsis)
{
    unsigned n = 0;

    for (int i = 0; i < E810_MAX_SW_RULES; i++) {
        const E810SwRule *r = &core->rules[i];
        uint32_t act = r->act;
        uint16_t id = (act & ICE_SINGLE_ACT_VSI_ID_M) >>
                      ICE_SINGLE_ACT_VSI_ID_S;

        if (!r->in_use || r->type > ICE_AQC_SW_RULES_T_LKUP_TX ||
            memcmp(r->hdr, da, ETH_ALEN) ||
            (act & ICE_SINGLE_ACT_TYPE_M) != ICE_SINGLE_ACT_VSI_FORWARDING ||
            !(act & ICE_SINGLE_ACT_VALID_BIT)) {
            continue;
        }
        if (act & ICE_SINGLE_ACT_DROP) {
            return 0;
        }
        if (act & ICE_SINGLE_ACT_VSI_LIST) {
            const E810SwRule *l =
                e810_rule_find(core, ICE_AQC_SW_RULES_T_VSI_LIST_SET, id);

            if (!l || l->type != ICE_AQC_SW_RULES_T_VSI_LIST_SET) {
                continue;
            }
            for (int j = 0; j < MIN(l->hdr[0], E810_VSI_LIST_MEMBERS); j++) {
                e810_lookup_add_vsi(core, lduw_le_p(&l->hdr[2 + 2 * j]),
                                    vsis, &n);
            }
        } else {
            e810_lookup_add_vsi(core, id, vsis, &n);
        }
    }
    return n;
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

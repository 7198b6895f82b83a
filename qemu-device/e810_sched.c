/*
 * QEMU Intel E810 ("ice") Ethernet controller: Tx scheduler tree
 *
 * The firmware owns a tree of scheduling elements named by TEIDs.  The
 * model reports 9 logical layers with a sibling-group size of 8 at every
 * layer (0x0412) and a default topology of root port -> TC0 -> entry
 * point (0x0400); the entry point at layer 2 is what ice_init_hw()
 * requires.  The driver then builds its VSI branches with add (0x0401),
 * query (0x0404), move (0x0408), delete (0x040F), update (0x0403) and
 * suspend/resume (0x0409/0x040A); 0x0C30 hangs LEAF nodes (queues) under
 * queue-group nodes.  A parent never gets more children than the layer's
 * sibling-group size, so the driver's fixed-size child arrays (sized from
 * the same numbers) cannot overflow.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "e810_core.h"
#include "e810_adminq.h"
#include "trace.h"

#define ICE_INVAL_TEID                  0xFFFFFFFF
#define E810_SCHED_FIRST_TEID           0x10
#define E810_SCHED_DFLT_BW_WT           4   /* ICE_SCHED_DFLT_BW_WT */

QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_txsched_elem) !=
                  E810_SCHED_ELEM_DATA);

/* The element data a node keeps (E810SchedNode.data) */
static struct ice_aqc_txsched_elem *e810_sched_elem(E810SchedNode *n)
{
    return (struct ice_aqc_txsched_elem *)n->data;
}

static void e810_sched_elem_default(struct ice_aqc_txsched_elem *e,
                                    uint8_t type)
{
    /* default RL profile 0 for CIR and EIR, weight 4 */
    *e = (struct ice_aqc_txsched_elem) {
        .elem_type = type,
        .valid_sections = ICE_AQC_ELEM_VALID_GENERIC |
                          ICE_AQC_ELEM_VALID_CIR | ICE_AQC_ELEM_VALID_EIR,
        .cir_bw.bw_alloc = cpu_to_le16(E810_SCHED_DFLT_BW_WT),
        .eir_bw.bw_alloc = cpu_to_le16(E810_SCHED_DFLT_BW_WT),
    };
}

E810SchedNode *e810_sched_find(E810Core *core, uint32_t teid)
{
    for (int i = 0; i < E810_SCHED_MAX_NODES; i++) {
        if (core->sched[i].in_use && core->sched[i].teid == teid) {
            return &core->sched[i];
        }
    }
    return NULL;
}

static unsigned e810_sched_num_children(E810Core *core, uint32_t teid)
{
    unsigned n = 0;

    for (int i = 0; i < E810_SCHED_MAX_NODES; i++) {
        if (core->sched[i].in_use && core->sched[i].parent_teid == teid) {
            n++;
        }
    }
    return n;
}

/* Can 'parent' take 'more' extra children? */
static bool e810_sched_has_room(E810Core *core, E810SchedNode *parent,
                                unsigned more)
{
    if (parent->layer + 1 >= E810_SCHED_NUM_LAYERS) {
        return false;
    }
    return e810_sched_num_children(core, parent->teid) + more <=
           E810_SCHED_SIBL_GRP_SZ;
}

static E810SchedNode *e810_sched_alloc(E810Core *core, uint32_t parent_teid,
                                       uint8_t layer,
                                       const struct ice_aqc_txsched_elem *data)
{
    for (int i = 0; i < E810_SCHED_MAX_NODES; i++) {
        E810SchedNode *n = &core->sched[i];

        if (n->in_use) {
            continue;
        }
        memset(n, 0, sizeof(*n));
        n->in_use = 1;
        n->teid = core->sched_next_teid++;
        if (core->sched_next_teid == ICE_INVAL_TEID) {
            core->sched_next_teid = E810_SCHED_FIRST_TEID;
        }
        n->parent_teid = parent_teid;
        n->layer = layer;
        memcpy(n->data, data, sizeof(*data));
        n->elem_type = data->elem_type;
        trace_e810_sched_add(n->teid, parent_teid, layer, n->elem_type);
        return n;
    }
    return NULL;
}

/*
 * Remove a node and its whole subtree.  Recursion depth is bounded by the
 * number of layers: a child is always one layer below its parent.
 */
void e810_sched_remove(E810Core *core, E810SchedNode *node)
{
    uint32_t teid = node->teid;

    trace_e810_sched_remove(teid, node->layer);
    if (node->elem_type == ICE_AQC_ELEM_TYPE_LEAF &&
        node->txq_id < E810_NUM_QUEUES &&
        core->txq_teid[node->txq_id] == teid) {
        core->txq_enabled[node->txq_id] = 0;
        core->txq_teid[node->txq_id] = 0;
    }
    node->in_use = 0;
    for (int i = 0; i < E810_SCHED_MAX_NODES; i++) {
        E810SchedNode *c = &core->sched[i];

        if (c->in_use && c->parent_teid == teid && c->layer > node->layer) {
            e810_sched_remove(core, c);
        }
    }
}

E810SchedNode *e810_sched_add_leaf(E810Core *core, uint32_t parent_teid,
                                   uint16_t txq_id,
                                   const struct ice_aqc_txsched_elem *info)
{
    E810SchedNode *parent = e810_sched_find(core, parent_teid);
    struct ice_aqc_txsched_elem data = *info;
    E810SchedNode *n;

    if (!parent || !e810_sched_has_room(core, parent, 1)) {
        return NULL;
    }
    data.elem_type = ICE_AQC_ELEM_TYPE_LEAF;
    n = e810_sched_alloc(core, parent_teid, parent->layer + 1, &data);
    if (n) {
        n->txq_id = txq_id;
    }
    return n;
}

static void e810_sched_write_elem(E810SchedNode *n,
                                  struct ice_aqc_txsched_elem_data *e)
{
    e->parent_teid = cpu_to_le32(n->parent_teid);
    e->node_teid = cpu_to_le32(n->teid);
    memcpy(&e->data, n->data, sizeof(e->data));
}

/* ------------------------------------------------------------------ */
/* admin commands                                                      */

/* 0x0412 query_sched_res */
uint16_t e810_aq_query_sched_res(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_query_txsched_res_resp *r = (void *)cmd->buf;

    QEMU_BUILD_BUG_ON(E810_SCHED_NUM_LAYERS != ICE_AQC_TOPO_MAX_LEVEL_NUM);
    if (!e810_aq_need_buf(cmd, sizeof(*r))) {
        return ICE_AQ_RC_EINVAL;
    }
    memset(r, 0, sizeof(*r));
    r->sched_props.phys_levels = cpu_to_le16(E810_SCHED_NUM_LAYERS);
    r->sched_props.logical_levels = cpu_to_le16(E810_SCHED_NUM_LAYERS);
    r->sched_props.max_pf_cgds = 8;
    for (int l = 0; l < E810_SCHED_NUM_LAYERS; l++) {
        struct ice_aqc_layer_props *p = &r->layer_props[l];

        p->logical_layer = l;
        p->chunk_size = 1;
        p->max_device_nodes = cpu_to_le16(E810_SCHED_MAX_NODES);
        p->max_pf_nodes = cpu_to_le16(E810_SCHED_MAX_NODES);
        p->max_sibl_grp_sz = cpu_to_le16(l ? E810_SCHED_SIBL_GRP_SZ : 1);
        /* no rate-limit profiles: max_cir/eir/srl_rl_profiles stay 0 */
    }
    cmd->resp_len = sizeof(*r);
    return ICE_AQ_RC_OK;
}

/*
 * 0x0418 get_tx_topo: which Tx topology runs.  Always the default 9-layer
 * one (0x0412 reports 9 layers), neither a new one loaded (LOAD_NEW) nor
 * a change pending (ISSUED): set_flags 0, so ice_cfg_tx_topo() finds
 * "default topology already applied" and keeps it.  The driver passes a
 * buffer with RD set; it is not written.  get_flags other than NVM (0) or
 * RAM (2): EINVAL.
 */
uint16_t e810_aq_get_tx_topo(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_get_set_tx_topo *p = &cmd->params.get_set_tx_topo;
    uint8_t get = p->get_flags;

    if (get != ICE_AQC_TX_TOPO_GET_NVM && get != ICE_AQC_TX_TOPO_GET_RAM) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: 0x0418 get_flags 0x%x\n", get);
        trace_e810_tx_topo(false, get, 0);
        return ICE_AQ_RC_EINVAL;
    }
    p->set_flags = 0;
    trace_e810_tx_topo(false, get, 0);
    return ICE_AQ_RC_OK;
}

/*
 * 0x0417 set_tx_topo: back to the default topology (no LOAD_NEW) is what
 * already runs: OK.  Loading the package's 5-layer topology (LOAD_NEW,
 * SRC_RAM + its buffer) is not modelled: ENOSYS + LOG_UNIMP, which the
 * driver reports as "Failed to apply Tx scheduling configuration".  It
 * only asks when 0x0418 said a new topology was wanted, which never
 * happens here.
 */
uint16_t e810_aq_set_tx_topo(E810Core *core, E810AqCmd *cmd)
{
    uint8_t set = cmd->params.get_set_tx_topo.set_flags;

    trace_e810_tx_topo(true, 0, set);
    if (set & ICE_AQC_TX_TOPO_FLAGS_LOAD_NEW) {
        qemu_log_mask(LOG_UNIMP, "e810: 0x0417 5-layer Tx topology not "
                      "modelled\n");
        return ICE_AQ_RC_ENOSYS;
    }
    return ICE_AQ_RC_OK;
}

/* 0x0400 get_dflt_topo: one branch, root -> TC0 -> entry point */
uint16_t e810_aq_get_dflt_topo(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_get_topo_elem *t = (void *)cmd->buf;
    unsigned n = 0;
    uint32_t teid = ICE_INVAL_TEID;

    if (!e810_aq_need_buf(cmd, sizeof(*t))) {
        return ICE_AQ_RC_EINVAL;
    }
    memset(t, 0, sizeof(*t));
    /* walk down from the root, following the first child at each layer */
    for (int layer = 0; layer < E810_SCHED_NUM_LAYERS; layer++) {
        E810SchedNode *found = NULL;

        for (int i = 0; i < E810_SCHED_MAX_NODES && !found; i++) {
            E810SchedNode *c = &core->sched[i];

            if (c->in_use && c->layer == layer && c->parent_teid == teid) {
                found = c;
            }
        }
        if (!found) {
            break;
        }
        e810_sched_write_elem(found, &t->generic[n]);
        teid = found->teid;
        n++;
    }
    t->hdr.parent_teid = cpu_to_le32(ICE_INVAL_TEID);
    t->hdr.num_elems = cpu_to_le16(n);
    cmd->params.get_topo.num_branches = 1;
    cmd->resp_len = sizeof(*t);
    return ICE_AQ_RC_OK;
}

/* 0x0401 add_sched_elems: groups of {parent_teid, num_elems} + elements */
uint16_t e810_aq_add_sched_elems(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_sched_elem_cmd *p = &cmd->params.sched_elem_cmd;
    uint16_t ngrps = le16_to_cpu(p->num_elem_req);
    uint32_t off = 0;
    uint16_t added = 0;

    if (!cmd->buf) {
        return ICE_AQ_RC_EINVAL;
    }
    for (uint16_t g = 0; g < ngrps; g++) {
        struct ice_aqc_add_elem *grp = (void *)(cmd->buf + off);
        uint32_t parent_teid;
        uint16_t num;
        E810SchedNode *parent;

        if (off + sizeof(grp->hdr) > cmd->buf_len) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: 0x0401 group %u beyond the buffer\n", g);
            return ICE_AQ_RC_EINVAL;
        }
        parent_teid = le32_to_cpu(grp->hdr.parent_teid);
        num = le16_to_cpu(grp->hdr.num_elems);
        off += sizeof(grp->hdr);
        if (off + (uint32_t)num * sizeof(grp->generic[0]) > cmd->buf_len) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: 0x0401 %u elements overrun the buffer\n",
                          num);
            return ICE_AQ_RC_EINVAL;
        }
        parent = e810_sched_find(core, parent_teid);
        if (!parent) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: 0x0401 parent TEID 0x%x unknown\n",
                          parent_teid);
            return ICE_AQ_RC_ENOENT;
        }
        if (!e810_sched_has_room(core, parent, num)) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: 0x0401 no room for %u children under TEID "
                          "0x%x (layer %u)\n", num, parent_teid,
                          parent->layer);
            return ICE_AQ_RC_ENOSPC;
        }
        for (uint16_t i = 0; i < num; i++) {
            struct ice_aqc_txsched_elem_data *e = &grp->generic[i];
            E810SchedNode *n = e810_sched_alloc(core, parent_teid,
                                                parent->layer + 1, &e->data);
            if (!n) {
                return ICE_AQ_RC_ENOSPC;
            }
            e810_sched_write_elem(n, e);
        }
        off += num * sizeof(grp->generic[0]);
        added++;
    }
    p->num_elem_resp = cpu_to_le16(added);      /* groups added */
    cmd->buf_wb = true;
    return ICE_AQ_RC_OK;
}

/* 0x0404 get_sched_elems: fill the elements whose node_teid is given */
uint16_t e810_aq_get_sched_elems(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_sched_elem_cmd *p = &cmd->params.sched_elem_cmd;
    struct ice_aqc_txsched_elem_data *e = (void *)cmd->buf;
    uint16_t num = le16_to_cpu(p->num_elem_req);
    uint16_t found = 0;

    if (!cmd->buf || (uint32_t)num * sizeof(*e) > cmd->buf_len) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: 0x0404 of %u elements, buffer %u\n", num,
                      cmd->buf ? cmd->buf_len : 0);
        return ICE_AQ_RC_EINVAL;
    }
    for (uint16_t i = 0; i < num; i++) {
        E810SchedNode *n = e810_sched_find(core,
                                           le32_to_cpu(e[i].node_teid));

        if (n) {
            e810_sched_write_elem(n, &e[i]);
            found++;
        }
    }
    p->num_elem_resp = cpu_to_le16(found);
    cmd->buf_wb = true;
    return found ? ICE_AQ_RC_OK : ICE_AQ_RC_ENOENT;
}

/* 0x0403 cfg_sched_elems: update element data (type stays) */
uint16_t e810_aq_cfg_sched_elems(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_sched_elem_cmd *p = &cmd->params.sched_elem_cmd;
    const struct ice_aqc_txsched_elem_data *e = (void *)cmd->buf;
    uint16_t num = le16_to_cpu(p->num_elem_req);
    uint16_t done = 0;

    if (!cmd->buf || (uint32_t)num * sizeof(*e) > cmd->buf_len) {
        return ICE_AQ_RC_EINVAL;
    }
    for (uint16_t i = 0; i < num; i++) {
        E810SchedNode *n = e810_sched_find(core,
                                           le32_to_cpu(e[i].node_teid));

        if (n) {
            struct ice_aqc_txsched_elem *d = e810_sched_elem(n);
            uint8_t type = d->elem_type;

            *d = e[i].data;
            d->elem_type = type;
            done++;
        }
    }
    p->num_elem_resp = cpu_to_le16(done);
    return done == num ? ICE_AQ_RC_OK : ICE_AQ_RC_ENOENT;
}

/* 0x0408 move_sched_elems: {src_parent, dest_parent, num, mode} + teid[] */
uint16_t e810_aq_move_sched_elems(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_sched_elem_cmd *p = &cmd->params.sched_elem_cmd;
    uint16_t ngrps = le16_to_cpu(p->num_elem_req);
    uint32_t off = 0;
    uint16_t moved = 0;

    if (!cmd->buf) {
        return ICE_AQ_RC_EINVAL;
    }
    for (uint16_t g = 0; g < ngrps; g++) {
        struct ice_aqc_move_elem *grp = (void *)(cmd->buf + off);
        E810SchedNode *dest;
        uint16_t num;

        if (off + sizeof(grp->hdr) > cmd->buf_len) {
            return ICE_AQ_RC_EINVAL;
        }
        dest = e810_sched_find(core, le32_to_cpu(grp->hdr.dest_parent_teid));
        num = le16_to_cpu(grp->hdr.num_elems);
        off += sizeof(grp->hdr);
        if (off + (uint32_t)num * sizeof(grp->teid[0]) > cmd->buf_len) {
            return ICE_AQ_RC_EINVAL;
        }
        if (!dest) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: 0x0408 destination parent unknown\n");
            return ICE_AQ_RC_ENOENT;
        }
        if (!e810_sched_has_room(core, dest, num)) {
            return ICE_AQ_RC_ENOSPC;
        }
        for (uint16_t i = 0; i < num; i++) {
            E810SchedNode *n = e810_sched_find(core,
                                               le32_to_cpu(grp->teid[i]));

            off += sizeof(grp->teid[0]);
            if (!n || n->layer != dest->layer + 1) {
                qemu_log_mask(LOG_GUEST_ERROR,
                              "e810: 0x0408 cannot move a node to layer "
                              "%u\n", dest->layer + 1);
                return ICE_AQ_RC_EINVAL;
            }
            trace_e810_sched_move(n->teid, n->parent_teid, dest->teid);
            n->parent_teid = dest->teid;
        }
        moved++;
    }
    p->num_elem_resp = cpu_to_le16(moved);
    return ICE_AQ_RC_OK;
}

/* 0x040F delete_sched_elems: {parent_teid, num} + teid[] */
uint16_t e810_aq_delete_sched_elems(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_sched_elem_cmd *p = &cmd->params.sched_elem_cmd;
    uint16_t ngrps = le16_to_cpu(p->num_elem_req);
    uint32_t off = 0;
    uint16_t deleted = 0;

    if (!cmd->buf) {
        return ICE_AQ_RC_EINVAL;
    }
    for (uint16_t g = 0; g < ngrps; g++) {
        struct ice_aqc_delete_elem *grp = (void *)(cmd->buf + off);
        uint16_t num;

        if (off + sizeof(grp->hdr) > cmd->buf_len) {
            return ICE_AQ_RC_EINVAL;
        }
        num = le16_to_cpu(grp->hdr.num_elems);
        off += sizeof(grp->hdr);
        if (off + (uint32_t)num * sizeof(grp->teid[0]) > cmd->buf_len) {
            return ICE_AQ_RC_EINVAL;
        }
        for (uint16_t i = 0; i < num; i++) {
            E810SchedNode *n = e810_sched_find(core,
                                               le32_to_cpu(grp->teid[i]));

            off += sizeof(grp->teid[0]);
            if (!n) {
                return ICE_AQ_RC_ENOENT;
            }
            if (n->elem_type == ICE_AQC_ELEM_TYPE_ROOT_PORT ||
                n->elem_type == ICE_AQC_ELEM_TYPE_TC) {
                qemu_log_mask(LOG_GUEST_ERROR,
                              "e810: 0x040F of root/TC node 0x%x\n", n->teid);
                return ICE_AQ_RC_EPERM;
            }
            e810_sched_remove(core, n);
        }
        deleted++;
    }
    p->num_elem_resp = cpu_to_le16(deleted);
    return ICE_AQ_RC_OK;
}

/* 0x0409 suspend / 0x040A resume: teid[] */
uint16_t e810_aq_suspend_resume_sched_elems(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_sched_elem_cmd *p = &cmd->params.sched_elem_cmd;
    uint16_t num = le16_to_cpu(p->num_elem_req);
    bool suspend = cmd->opcode == ice_aqc_opc_suspend_sched_elems;
    uint16_t done = 0;

    if (!cmd->buf || (uint32_t)num * sizeof(uint32_t) > cmd->buf_len) {
        return ICE_AQ_RC_EINVAL;
    }
    for (uint16_t i = 0; i < num; i++) {
        E810SchedNode *n = e810_sched_find(core,
                                           ldl_le_p(cmd->buf + 4 * i));

        if (n) {
            if (suspend) {
                e810_sched_elem(n)->flags |= ICE_AQC_ELEM_FLAG_SUSPEND_M;
            } else {
                e810_sched_elem(n)->flags &= ~ICE_AQC_ELEM_FLAG_SUSPEND_M;
            }
            done++;
        }
    }
    p->num_elem_resp = cpu_to_le16(done);
    return done == num ? ICE_AQ_RC_OK : ICE_AQ_RC_ENOENT;
}

/*
 * 0x0410 add / 0x0415 remove RL profiles: accepted, not enforced (no rate
 * limiting is modelled).  Added profiles get an id.
 */
uint16_t e810_aq_rl_profiles(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_rl_profile *p = &cmd->params.rl_profile;
    struct ice_aqc_rl_profile_elem *e = (void *)cmd->buf;
    uint16_t num = le16_to_cpu(p->num_profiles);

    if (!cmd->buf || (uint32_t)num * sizeof(*e) > cmd->buf_len) {
        return ICE_AQ_RC_EINVAL;
    }
    if (cmd->opcode == ice_aqc_opc_add_rl_profiles) {
        for (uint16_t i = 0; i < num; i++) {
            e[i].profile_id = cpu_to_le16(1 + i);
        }
        cmd->buf_wb = true;
    }
    p->num_processed = cpu_to_le16(num);
    qemu_log_mask(LOG_UNIMP, "e810: Tx rate limiting profiles accepted but "
                  "not enforced\n");
    return ICE_AQ_RC_OK;
}

/* The port's root node (layer 0) and its first TC node, NULL if none */
E810SchedNode *e810_sched_root(E810Core *core)
{
    for (int i = 0; i < E810_SCHED_MAX_NODES; i++) {
        if (core->sched[i].in_use && core->sched[i].layer == 0) {
            return &core->sched[i];
        }
    }
    return NULL;
}

E810SchedNode *e810_sched_tc0(E810Core *core)
{
    E810SchedNode *root = e810_sched_root(core);

    for (int i = 0; root && i < E810_SCHED_MAX_NODES; i++) {
        E810SchedNode *n = &core->sched[i];

        if (n->in_use && n->parent_teid == root->teid &&
            n->elem_type == ICE_AQC_ELEM_TYPE_TC) {
            return n;
        }
    }
    return NULL;
}

void e810_sched_reset(E810Core *core)
{
    struct ice_aqc_txsched_elem data;
    E810SchedNode *root, *tc;

    memset(core->sched, 0, sizeof(core->sched));
    core->sched_next_teid = E810_SCHED_FIRST_TEID;

    e810_sched_elem_default(&data, ICE_AQC_ELEM_TYPE_ROOT_PORT);
    root = e810_sched_alloc(core, ICE_INVAL_TEID, 0, &data);
    e810_sched_elem_default(&data, ICE_AQC_ELEM_TYPE_TC);
    tc = e810_sched_alloc(core, root->teid, 1, &data);
    e810_sched_elem_default(&data, ICE_AQC_ELEM_TYPE_ENTRY_POINT);
    e810_sched_alloc(core, tc->teid, 2, &data);
}

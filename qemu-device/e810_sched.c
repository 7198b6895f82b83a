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

/* ICE_AQC_ELEM_TYPE_* */
#define ICE_AQC_ELEM_TYPE_ROOT_PORT     0x1
#define ICE_AQC_ELEM_TYPE_TC            0x2
#define ICE_AQC_ELEM_TYPE_SE_GENERIC    0x3
#define ICE_AQC_ELEM_TYPE_ENTRY_POINT   0x4
#define ICE_AQC_ELEM_TYPE_LEAF          0x5
#define ICE_AQC_ELEM_VALID_GENERIC      0x1
#define ICE_AQC_ELEM_VALID_CIR          0x2
#define ICE_AQC_ELEM_VALID_EIR          0x4
#define ICE_AQC_ELEM_FLAG_SUSPEND_M     0x1

#define ICE_INVAL_TEID                  0xFFFFFFFF
#define E810_SCHED_ELEM_DATA_SIZE       24  /* ice_aqc_txsched_elem_data */
#define E810_SCHED_TOPO_ELEM_SIZE       (8 + 9 * E810_SCHED_ELEM_DATA_SIZE)
#define E810_SCHED_FIRST_TEID           0x10

static void e810_sched_elem_default(uint8_t *data, uint8_t type)
{
    memset(data, 0, E810_SCHED_ELEM_DATA);
    data[0] = type;
    data[1] = ICE_AQC_ELEM_VALID_GENERIC | ICE_AQC_ELEM_VALID_CIR |
              ICE_AQC_ELEM_VALID_EIR;
    /* cir_bw / eir_bw: default RL profile 0, weight 4 (ICE_SCHED_DFLT_BW_WT) */
    e810_st16(data + 6, 4);
    e810_st16(data + 10, 4);
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
                                       uint8_t layer, const uint8_t *data)
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
        memcpy(n->data, data, E810_SCHED_ELEM_DATA);
        n->elem_type = data[0];
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
                                   uint16_t txq_id, const uint8_t *info)
{
    E810SchedNode *parent = e810_sched_find(core, parent_teid);
    uint8_t data[E810_SCHED_ELEM_DATA];
    E810SchedNode *n;

    if (!parent || !e810_sched_has_room(core, parent, 1)) {
        return NULL;
    }
    memcpy(data, info, E810_SCHED_ELEM_DATA);
    data[0] = ICE_AQC_ELEM_TYPE_LEAF;
    n = e810_sched_alloc(core, parent_teid, parent->layer + 1, data);
    if (n) {
        n->txq_id = txq_id;
    }
    return n;
}

static void e810_sched_write_elem(E810SchedNode *n, uint8_t *e)
{
    e810_st32(e + 0, n->parent_teid);
    e810_st32(e + 4, n->teid);
    memcpy(e + 8, n->data, E810_SCHED_ELEM_DATA);
}

/* ------------------------------------------------------------------ */
/* admin commands                                                      */

/* 0x0412 query_sched_res: struct ice_aqc_query_txsched_res_resp */
uint16_t e810_aq_query_sched_res(E810Core *core, E810AqCmd *cmd)
{
    const uint16_t size = 32 + 9 * 32;

    if (!e810_aq_need_buf(cmd, size)) {
        return ICE_AQ_RC_EINVAL;
    }
    memset(cmd->buf, 0, size);
    e810_st16(cmd->buf + 0, E810_SCHED_NUM_LAYERS);     /* phys_levels */
    e810_st16(cmd->buf + 2, E810_SCHED_NUM_LAYERS);     /* logical_levels */
    cmd->buf[6] = 8;                                    /* max_pf_cgds */
    for (int l = 0; l < E810_SCHED_NUM_LAYERS; l++) {
        uint8_t *p = cmd->buf + 32 + l * 32;

        p[0] = l;                                       /* logical_layer */
        p[1] = 1;                                       /* chunk_size */
        e810_st16(p + 2, E810_SCHED_MAX_NODES);         /* max_device_nodes */
        e810_st16(p + 4, E810_SCHED_MAX_NODES);         /* max_pf_nodes */
        e810_st16(p + 10, l ? E810_SCHED_SIBL_GRP_SZ : 1);
        e810_st16(p + 12, 0);                           /* max_cir_rl_prof */
        e810_st16(p + 14, 0);                           /* max_eir_rl_prof */
        e810_st16(p + 16, 0);                           /* max_srl_prof */
    }
    cmd->resp_len = size;
    return ICE_AQ_RC_OK;
}

/* 0x0400 get_dflt_topo: one branch, root -> TC0 -> entry point */
uint16_t e810_aq_get_dflt_topo(E810Core *core, E810AqCmd *cmd)
{
    uint8_t *hdr = cmd->buf;
    unsigned n = 0;
    uint32_t teid = ICE_INVAL_TEID;

    if (!e810_aq_need_buf(cmd, E810_SCHED_TOPO_ELEM_SIZE)) {
        return ICE_AQ_RC_EINVAL;
    }
    memset(hdr, 0, E810_SCHED_TOPO_ELEM_SIZE);
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
        e810_sched_write_elem(found, hdr + 8 + n * E810_SCHED_ELEM_DATA_SIZE);
        teid = found->teid;
        n++;
    }
    e810_st32(hdr + 0, ICE_INVAL_TEID);
    e810_st16(hdr + 4, n);
    cmd->params[1] = 1;                                 /* num_branches */
    cmd->resp_len = E810_SCHED_TOPO_ELEM_SIZE;
    return ICE_AQ_RC_OK;
}

/* 0x0401 add_sched_elems: groups of {parent_teid, num_elems} + elements */
uint16_t e810_aq_add_sched_elems(E810Core *core, E810AqCmd *cmd)
{
    uint16_t ngrps = e810_le16(cmd->params);
    uint32_t off = 0;
    uint16_t added = 0;

    if (!cmd->buf) {
        return ICE_AQ_RC_EINVAL;
    }
    for (uint16_t g = 0; g < ngrps; g++) {
        uint32_t parent_teid;
        uint16_t num;
        E810SchedNode *parent;

        if (off + 8 > cmd->buf_len) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: 0x0401 group %u beyond the buffer\n", g);
            return ICE_AQ_RC_EINVAL;
        }
        parent_teid = e810_le32(cmd->buf + off);
        num = e810_le16(cmd->buf + off + 4);
        off += 8;
        if (off + (uint32_t)num * E810_SCHED_ELEM_DATA_SIZE > cmd->buf_len) {
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
            uint8_t *e = cmd->buf + off + i * E810_SCHED_ELEM_DATA_SIZE;
            E810SchedNode *n = e810_sched_alloc(core, parent_teid,
                                                parent->layer + 1, e + 8);
            if (!n) {
                return ICE_AQ_RC_ENOSPC;
            }
            e810_sched_write_elem(n, e);
        }
        off += num * E810_SCHED_ELEM_DATA_SIZE;
        added++;
    }
    e810_st16(cmd->params + 2, added);          /* groups added */
    cmd->buf_wb = true;
    return ICE_AQ_RC_OK;
}

/* 0x0404 get_sched_elems: fill the elements whose node_teid is given */
uint16_t e810_aq_get_sched_elems(E810Core *core, E810AqCmd *cmd)
{
    uint16_t num = e810_le16(cmd->params);
    uint16_t found = 0;

    if (!cmd->buf ||
        (uint32_t)num * E810_SCHED_ELEM_DATA_SIZE > cmd->buf_len) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: 0x0404 of %u elements, buffer %u\n", num,
                      cmd->buf ? cmd->buf_len : 0);
        return ICE_AQ_RC_EINVAL;
    }
    for (uint16_t i = 0; i < num; i++) {
        uint8_t *e = cmd->buf + i * E810_SCHED_ELEM_DATA_SIZE;
        E810SchedNode *n = e810_sched_find(core, e810_le32(e + 4));

        if (n) {
            e810_sched_write_elem(n, e);
            found++;
        }
    }
    e810_st16(cmd->params + 2, found);
    cmd->buf_wb = true;
    return found ? ICE_AQ_RC_OK : ICE_AQ_RC_ENOENT;
}

/* 0x0403 cfg_sched_elems: update element data (type stays) */
uint16_t e810_aq_cfg_sched_elems(E810Core *core, E810AqCmd *cmd)
{
    uint16_t num = e810_le16(cmd->params);
    uint16_t done = 0;

    if (!cmd->buf ||
        (uint32_t)num * E810_SCHED_ELEM_DATA_SIZE > cmd->buf_len) {
        return ICE_AQ_RC_EINVAL;
    }
    for (uint16_t i = 0; i < num; i++) {
        uint8_t *e = cmd->buf + i * E810_SCHED_ELEM_DATA_SIZE;
        E810SchedNode *n = e810_sched_find(core, e810_le32(e + 4));

        if (n) {
            uint8_t type = n->data[0];

            memcpy(n->data, e + 8, E810_SCHED_ELEM_DATA);
            n->data[0] = type;
            done++;
        }
    }
    e810_st16(cmd->params + 2, done);
    return done == num ? ICE_AQ_RC_OK : ICE_AQ_RC_ENOENT;
}

/* 0x0408 move_sched_elems: {src_parent, dest_parent, num, mode} + teid[] */
uint16_t e810_aq_move_sched_elems(E810Core *core, E810AqCmd *cmd)
{
    uint16_t ngrps = e810_le16(cmd->params);
    uint32_t off = 0;
    uint16_t moved = 0;

    if (!cmd->buf) {
        return ICE_AQ_RC_EINVAL;
    }
    for (uint16_t g = 0; g < ngrps; g++) {
        E810SchedNode *dest;
        uint16_t num;

        if (off + 12 > cmd->buf_len) {
            return ICE_AQ_RC_EINVAL;
        }
        dest = e810_sched_find(core, e810_le32(cmd->buf + off + 4));
        num = e810_le16(cmd->buf + off + 8);
        off += 12;
        if (off + (uint32_t)num * 4 > cmd->buf_len) {
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
                                               e810_le32(cmd->buf + off));
            off += 4;
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
    e810_st16(cmd->params + 2, moved);
    return ICE_AQ_RC_OK;
}

/* 0x040F delete_sched_elems: {parent_teid, num} + teid[] */
uint16_t e810_aq_delete_sched_elems(E810Core *core, E810AqCmd *cmd)
{
    uint16_t ngrps = e810_le16(cmd->params);
    uint32_t off = 0;
    uint16_t deleted = 0;

    if (!cmd->buf) {
        return ICE_AQ_RC_EINVAL;
    }
    for (uint16_t g = 0; g < ngrps; g++) {
        uint16_t num;

        if (off + 8 > cmd->buf_len) {
            return ICE_AQ_RC_EINVAL;
        }
        num = e810_le16(cmd->buf + off + 4);
        off += 8;
        if (off + (uint32_t)num * 4 > cmd->buf_len) {
            return ICE_AQ_RC_EINVAL;
        }
        for (uint16_t i = 0; i < num; i++) {
            E810SchedNode *n = e810_sched_find(core,
                                               e810_le32(cmd->buf + off));
            off += 4;
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
    e810_st16(cmd->params + 2, deleted);
    return ICE_AQ_RC_OK;
}

/* 0x0409 suspend / 0x040A resume: teid[] */
uint16_t e810_aq_suspend_resume_sched_elems(E810Core *core, E810AqCmd *cmd)
{
    uint16_t num = e810_le16(cmd->params);
    bool suspend = cmd->opcode == 0x0409;
    uint16_t done = 0;

    if (!cmd->buf || (uint32_t)num * 4 > cmd->buf_len) {
        return ICE_AQ_RC_EINVAL;
    }
    for (uint16_t i = 0; i < num; i++) {
        E810SchedNode *n = e810_sched_find(core, e810_le32(cmd->buf + 4 * i));

        if (n) {
            if (suspend) {
                n->data[3] |= ICE_AQC_ELEM_FLAG_SUSPEND_M;
            } else {
                n->data[3] &= ~ICE_AQC_ELEM_FLAG_SUSPEND_M;
            }
            done++;
        }
    }
    e810_st16(cmd->params + 2, done);
    return done == num ? ICE_AQ_RC_OK : ICE_AQ_RC_ENOENT;
}

/*
 * 0x0410 add / 0x0415 remove RL profiles: accepted, not enforced (no rate
 * limiting is modelled).  Added profiles get an id.
 */
uint16_t e810_aq_rl_profiles(E810Core *core, E810AqCmd *cmd)
{
    uint16_t num = e810_le16(cmd->params);
    const uint32_t esz = 16;            /* struct ice_aqc_rl_profile_elem */

    if (!cmd->buf || (uint32_t)num * esz > cmd->buf_len) {
        return ICE_AQ_RC_EINVAL;
    }
    if (cmd->opcode == 0x0410) {
        for (uint16_t i = 0; i < num; i++) {
            e810_st16(cmd->buf + i * esz + 2, 1 + i);
        }
        cmd->buf_wb = true;
    }
    e810_st16(cmd->params + 2, num);
    qemu_log_mask(LOG_UNIMP, "e810: Tx rate limiting profiles accepted but "
                  "not enforced\n");
    return ICE_AQ_RC_OK;
}

void e810_sched_reset(E810Core *core)
{
    uint8_t data[E810_SCHED_ELEM_DATA];
    E810SchedNode *root, *tc;

    memset(core->sched, 0, sizeof(core->sched));
    core->sched_next_teid = E810_SCHED_FIRST_TEID;

    e810_sched_elem_default(data, ICE_AQC_ELEM_TYPE_ROOT_PORT);
    root = e810_sched_alloc(core, ICE_INVAL_TEID, 0, data);
    e810_sched_elem_default(data, ICE_AQC_ELEM_TYPE_TC);
    tc = e810_sched_alloc(core, root->teid, 1, data);
    e810_sched_elem_default(data, ICE_AQC_ELEM_TYPE_ENTRY_POINT);
    e810_sched_alloc(core, tc->teid, 2, data);
}

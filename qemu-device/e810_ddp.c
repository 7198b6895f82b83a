/*
 * QEMU Intel E810 ("ice") Ethernet controller: DDP package and the
 * flexible pipeline
 *
 * Package download (0x0C40).  With the global config lock (resource 4)
 * held for write, the driver sends the E810 signing segment's buffers and
 * then the signed configuration buffers of the "ICE Configuration Data"
 * segment, the last one flagged LAST_BUF (ice_ddp.c).  Every buffer is a
 * struct ice_buf_hdr {section_count, data_end, section_entry[]}; the model
 * checks that layout, ignores the signatures and reads what it needs:
 *  - ICE_SID_METADATA (1): ice_meta_sect {ver, name[28], track_id}, the
 *    version and name 0x0C43 reports for the active package (the E810
 *    1.3.41.0 package carries it in the first signed buffer);
 *  - the RSS block's XLT1 (42), XLT2 (43), profile TCAM (44) and field
 *    vectors (46): the package defaults of the tables the RSS hash uses;
 *  - the RSS and flow-director TCAM defaults, to know which profile IDs
 *    and TCAM entries the firmware must not hand out (0x0208);
 *  - ICE_SID_RXPARSER_METADATA_INIT (58), answered by 0x0C41.
 * A package stays active across PF resets; CORER, GLOBR and device reset
 * drop it, after which the driver downloads its kept copy again.
 *
 * Update package (0x0C42), under the change lock (resource 3), carries
 * single-entry sections for the same tables (ice_upd_prof_hw()); the RSS
 * block's entries are applied, others (flow director, boost TCAM for
 * tunnels) are accepted and traced.
 *
 * VLAN mode: the package supports double VLAN mode (its metadata-init
 * entry has the VLAN-mode flag), 0x020D answers; 0x020C accepts single
 * VLAN mode and refuses double VLAN mode, which is not modelled (QinQ
 * tag handling in the data path), so the driver falls back to SVM
 * (ice_set_vlan_mode()).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "e810_core.h"
#include "e810_adminq.h"
#include "e810_ddp.h"
#include "trace.h"

/* FD block sizes (blk_sizes[ICE_BLK_FD]) */
#define E810_FD_TCAM                512
#define E810_FD_PROFS               128

/* the package the NVM holds ("in NVM", "active at boot") */
static const uint8_t e810_nvm_pkg_ver[4] = { 1, 3, 30, 0 };
#define E810_NVM_PKG_NAME           "ICE OS Default Package"
#define E810_NVM_PKG_TRACK_ID       0xc0000001

QEMU_BUILD_BUG_ON(E810_PKG_NAME_SIZE != ICE_SEG_NAME_SIZE);
QEMU_BUILD_BUG_ON(E810_FLEX_KEY_SZ != ICE_TCAM_KEY_SZ);

static const uint16_t e810_pool_size[E810_POOL_NUM] = {
    [E810_POOL_FD_PROF] = E810_FD_PROFS,
    [E810_POOL_FD_TCAM] = E810_FD_TCAM,
    [E810_POOL_RSS_PROF] = E810_FLEX_PROFS,
    [E810_POOL_RSS_TCAM] = E810_FLEX_TCAM,
};

/* ------------------------------------------------------------------ */
/* package buffers                                                     */

typedef void (*E810SectFn)(E810Core *core, uint32_t type, const uint8_t *s,
                           uint16_t size, bool dflt);

/*
 * Check a struct ice_buf_hdr of 'len' bytes; 0 if well formed, otherwise
 * the byte offset of the first bad field + 1 (the error_offset answer).
 */
static uint32_t e810_pkg_buf_check(const uint8_t *buf, uint32_t len,
                                   uint16_t *nsect)
{
    const struct ice_buf_hdr *hdr = (const void *)buf;
    uint16_t count, data_end;
    uint32_t entries_end;

    if (len < ICE_MIN_S_DATA_END) {
        return 1;
    }
    count = le16_to_cpu(hdr->section_count);
    data_end = le16_to_cpu(hdr->data_end);
    if (count < ICE_MIN_S_COUNT || count > ICE_MAX_S_COUNT) {
        return offsetof(struct ice_buf_hdr, section_count) + 1;
    }
    entries_end = sizeof(*hdr) + count * sizeof(hdr->section_entry[0]);
    if (data_end < ICE_MIN_S_DATA_END || data_end > ICE_MAX_S_DATA_END ||
        data_end > len || entries_end > data_end) {
        return offsetof(struct ice_buf_hdr, data_end) + 1;
    }
    for (uint16_t i = 0; i < count; i++) {
        const struct ice_section_entry *e = &hdr->section_entry[i];
        uint32_t off = le16_to_cpu(e->offset), size = le16_to_cpu(e->size);

        if (off < entries_end || off + size > data_end) {
            return offsetof(struct ice_buf_hdr, section_entry) +
                   i * sizeof(*e) + offsetof(struct ice_section_entry, offset) +
                   1;
        }
    }
    *nsect = count;
    return 0;
}

static void e810_pkg_buf_walk(E810Core *core, const uint8_t *buf,
                              uint16_t nsect, E810SectFn fn, bool dflt)
{
    const struct ice_buf_hdr *hdr = (const void *)buf;

    for (uint16_t i = 0; i < nsect; i++) {
        const struct ice_section_entry *e = &hdr->section_entry[i];

        fn(core, le32_to_cpu(e->type), buf + le16_to_cpu(e->offset),
           le16_to_cpu(e->size), dflt);
    }
}

/* ------------------------------------------------------------------ */
/* flexible pipeline tables (RSS block)                                */

static inline bool e810_bit_get(const uint8_t *map, uint32_t bit)
{
    return map[bit / 8] & (1u << (bit % 8));
}

static inline void e810_bit_put(uint8_t *map, uint32_t bit, bool on)
{
    if (on) {
        map[bit / 8] |= 1u << (bit % 8);
    } else {
        map[bit / 8] &= ~(1u << (bit % 8));
    }
}

/* A TCAM entry that can match: no bit with key = invert = 0 (never) */
static bool e810_tcam_key_live(const uint8_t *key)
{
    for (int i = 0; i < E810_FLEX_KEY_SZ / 2; i++) {
        if ((uint8_t)~(key[i] | key[i + E810_FLEX_KEY_SZ / 2])) {
            return false;
        }
    }
    return true;
}

/* {count, offset, value[]} of XLT1 (u8) or XLT2 (le16) */
static void e810_flex_xlt(E810FlexTables *t, bool xlt2, const uint8_t *s,
                          uint16_t size)
{
    const struct ice_xlt1_section *x1 = (const void *)s;
    const struct ice_xlt2_section *x2 = (const void *)s;
    uint32_t count, off;

    QEMU_BUILD_BUG_ON(sizeof(*x1) != sizeof(*x2));
    if (size < sizeof(*x1)) {
        goto bad;
    }
    count = le16_to_cpu(x1->count);
    off = le16_to_cpu(x1->offset);
    if (sizeof(*x1) + count * (xlt2 ? sizeof(x2->value[0])
                                    : sizeof(x1->value[0])) > size) {
        goto bad;
    }
    for (uint32_t i = 0; i < count; i++) {
        uint32_t idx = off + i;

        if (xlt2) {
            if (idx < E810_FLEX_VSIS) {
                t->xlt2[idx] = le16_to_cpu(x2->value[i]);
            }
        } else if (idx < E810_FLEX_PTYPES) {
            t->xlt1[idx] = x1->value[i];
        }
    }
    return;
bad:
    qemu_log_mask(LOG_GUEST_ERROR, "e810: package XLT%d section of %u bytes "
                  "malformed\n", xlt2 ? 2 : 1, size);
}

/* {count, ice_prof_tcam_entry[]}; 'pool' >= 0: note the live entries */
static void e810_flex_tcam(E810Core *core, E810FlexTables *t, int pool,
                           const uint8_t *s, uint16_t size)
{
    const struct ice_prof_id_section *sect = (const void *)s;
    uint32_t count = size >= sizeof(*sect) ? le16_to_cpu(sect->count) : 0;

    if (size < sizeof(*sect) ||
        sizeof(*sect) + count * sizeof(sect->entry[0]) > size) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: package profile TCAM section "
                      "of %u bytes malformed\n", size);
        return;
    }
    for (uint32_t i = 0; i < count; i++) {
        const struct ice_prof_tcam_entry *e = &sect->entry[i];
        uint16_t addr = le16_to_cpu(e->addr);
        uint8_t prof = e->prof_id;
        bool live = e810_tcam_key_live(e->key);

        if (t && addr < E810_FLEX_TCAM) {
            memcpy(t->tcam_key[addr], e->key, E810_FLEX_KEY_SZ);
            t->tcam_prof[addr] = prof;
        }
        if (pool >= 0 && live) {
            /* package defaults: their entries and profiles stay taken */
            if (addr < e810_pool_size[pool]) {
                e810_bit_put(core->flex.pool_rsvd[pool], addr, true);
            }
            /* the profile pool precedes its TCAM pool */
            if (prof < e810_pool_size[pool - 1]) {
                e810_bit_put(core->flex.pool_rsvd[pool - 1], prof, true);
            }
        }
        if (t && addr < E810_FLEX_TCAM) {
            /*
             * The two 5-byte halves of the key (value, invert). Loaded from a
             * padded copy: an 8-byte load at e + 7 would read past the entry,
             * and past the buffer for the last entry of a full one.
             */
            uint8_t k[16] = { 0 };

            memcpy(k, e->key, E810_FLEX_KEY_SZ);
            trace_e810_flex_tcam(addr, prof, live,
                                 ldq_le_p(k) & 0xFFFFFFFFFFull,
                                 ldq_le_p(k + 5) & 0xFFFFFFFFFFull);
        }
    }
}

/* {count, offset, ice_fv_word[count * fvw]} */
static void e810_flex_es(E810FlexTables *t, const uint8_t *s, uint16_t size)
{
    const struct ice_sw_fv_section *sect = (const void *)s;
    uint32_t count, off;

    if (size < sizeof(*sect)) {
        goto bad;
    }
    count = le16_to_cpu(sect->count);
    off = le16_to_cpu(sect->base_offset);
    if (sizeof(*sect) + count * E810_FLEX_FVW * sizeof(sect->fv[0]) > size) {
        goto bad;
    }
    for (uint32_t i = 0; i < count; i++) {
        uint32_t prof = off + i;

        if (prof >= E810_FLEX_PROFS) {
            break;
        }
        for (int w = 0; w < E810_FLEX_FVW; w++) {
            const struct ice_fv_word *fv = &sect->fv[i * E810_FLEX_FVW + w];

            t->fv_prot[prof][w] = fv->prot_id;
            t->fv_off[prof][w] = le16_to_cpu(fv->off);
        }
        trace_e810_flex_fv(prof, t->fv_prot[prof][E810_FLEX_FVW - 1],
                           t->fv_off[prof][E810_FLEX_FVW - 1]);
    }
    return;
bad:
    qemu_log_mask(LOG_GUEST_ERROR, "e810: package field-vector section of "
                  "%u bytes malformed\n", size);
}

/* one section of a downloaded (dflt) or update buffer */
static void e810_pkg_sect(E810Core *core, uint32_t type, const uint8_t *s,
                          uint16_t size, bool dflt)
{
    E810Ddp *p = &core->ddp;
    E810FlexTables *t = dflt ? &core->flex.dflt : &core->flex.cur;

    switch (type) {
    case ICE_SID_METADATA:
        if (dflt && size >= sizeof(struct ice_meta_sect)) {
            const struct ice_meta_sect *m = (const void *)s;

            QEMU_BUILD_BUG_ON(sizeof(p->dl_ver) != sizeof(m->ver));
            memcpy(p->dl_ver, &m->ver, sizeof(p->dl_ver));
            memcpy(p->dl_name, m->name, E810_PKG_NAME_SIZE);
            p->dl_track_id = le32_to_cpu(m->track_id);
            p->dl_meta = true;
        }
        break;
    case ICE_SID_RXPARSER_METADATA_INIT:
        if (dflt) {
            p->meta_init_len = MIN(size, E810_PKG_META_INIT_MAX);
            memcpy(p->meta_init, s, p->meta_init_len);
        }
        break;
    case ICE_SID_XLT1_RSS:
    case ICE_SID_XLT2_RSS:
        e810_flex_xlt(t, type == ICE_SID_XLT2_RSS, s, size);
        break;
    case ICE_SID_PROFID_TCAM_RSS:
        e810_flex_tcam(core, t, dflt ? E810_POOL_RSS_TCAM : -1, s, size);
        break;
    case ICE_SID_FLD_VEC_RSS:
        e810_flex_es(t, s, size);
        break;
    case ICE_SID_PROFID_TCAM_FD:
        if (dflt) {
            e810_flex_tcam(core, NULL, E810_POOL_FD_TCAM, s, size);
        }
        break;
    default:
        if (!dflt) {
            /* FD profiles, boost TCAM (tunnel ports)...: not modelled */
            trace_e810_pkg_update_sect_ignored(type, size);
        }
        break;
    }
}

/* ------------------------------------------------------------------ */
/* resets                                                              */

uint16_t e810_ddp_global_lock_status(E810Core *core)
{
    /* a package is loaded: nothing to do */
    return core->ddp.active ? ICE_AQ_RES_GLBL_DONE : ICE_AQ_RES_GLBL_SUCCESS;
}

/* PF reset / clear PF config: tables back to the package, ids freed */
void e810_ddp_pf_reset(E810Core *core)
{
    E810Flex *f = &core->flex;

    f->cur = f->dflt;
    memcpy(f->pool_used, f->pool_rsvd, sizeof(f->pool_used));
    memset(f->glqf_hsymm, 0, sizeof(f->glqf_hsymm));
    memset(f->glqf_fdinset, 0, sizeof(f->glqf_fdinset));
    memset(f->glqf_fdswap, 0, sizeof(f->glqf_fdswap));
    f->pfqf_fd_size = 0;
    core->ddp.dl_busy = false;
}

/* device reset, CORER, GLOBR: the package is gone */
void e810_ddp_reset(E810Core *core)
{
    memset(&core->ddp, 0, sizeof(core->ddp));
    memset(&core->flex, 0, sizeof(core->flex));
}

/* ------------------------------------------------------------------ */
/* resource pools (0x0208 / 0x0209)                                    */

bool e810_flex_res_type(uint16_t type, int *pool)
{
    switch (type) {
    case ICE_AQC_RES_TYPE_FD_PROF_BLDR_PROFID:
        *pool = E810_POOL_FD_PROF;
        return true;
    case ICE_AQC_RES_TYPE_FD_PROF_BLDR_TCAM:
        *pool = E810_POOL_FD_TCAM;
        return true;
    case ICE_AQC_RES_TYPE_HASH_PROF_BLDR_PROFID:
        *pool = E810_POOL_RSS_PROF;
        return true;
    case ICE_AQC_RES_TYPE_HASH_PROF_BLDR_TCAM:
        *pool = E810_POOL_RSS_TCAM;
        return true;
    }
    return false;
}

/* the first free id from the top (low ids, higher TCAM priority) or bottom */
uint16_t e810_flex_res_alloc(E810Core *core, int pool, bool bottom,
                             uint16_t *id)
{
    uint8_t *used = core->flex.pool_used[pool];
    uint32_t n = e810_pool_size[pool];

    for (uint32_t i = 0; i < n; i++) {
        uint32_t cand = bottom ? n - 1 - i : i;

        if (!e810_bit_get(used, cand)) {
            e810_bit_put(used, cand, true);
            *id = cand;
            return ICE_AQ_RC_OK;
        }
    }
    qemu_log_mask(LOG_GUEST_ERROR, "e810: flex resource pool %d exhausted\n",
                  pool);
    return ICE_AQ_RC_ENOSPC;
}

uint16_t e810_flex_res_free(E810Core *core, int pool, uint16_t id)
{
    E810Flex *f = &core->flex;

    if (id >= e810_pool_size[pool] || !e810_bit_get(f->pool_used[pool], id) ||
        e810_bit_get(f->pool_rsvd[pool], id)) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: free of flex resource %u of "
                      "pool %d that is not allocated\n", id, pool);
        return ICE_AQ_RC_ENOENT;
    }
    e810_bit_put(f->pool_used[pool], id, false);
    return ICE_AQ_RC_OK;
}

/*
 * 0x0208/0x0209 types 0x22/0x23: flow-director guaranteed/shared entries,
 * allocated as a count (num_elems) with one element in the buffer
 * (ice_alloc_res_cntr()); PFQF_FD_SIZE reports what the PF holds.
 */
uint16_t e810_flex_fd_entries(E810Core *core, uint16_t type, bool alloc,
                              uint16_t num)
{
    uint32_t v = core->flex.pfqf_fd_size;
    uint32_t g = v & 0x7FFF, b = (v >> 16) & 0x7FFF;
    bool guar = type == ICE_AQC_RES_TYPE_FDIR_GUARANTEED_ENTRIES;
    uint32_t *cnt = guar ? &g : &b;
    uint32_t max = guar ? E810_FD_GSIZE : E810_FD_BSIZE;

    if (alloc) {
        if (*cnt + num > max) {
            qemu_log_mask(LOG_GUEST_ERROR, "e810: %u flow-director entries "
                          "of type 0x%x: %u of %u left\n", num, type,
                          max - *cnt, max);
            return ICE_AQ_RC_ENOSPC;
        }
        *cnt += num;
    } else {
        *cnt -= MIN(*cnt, num);
    }
    core->flex.pfqf_fd_size = g | (b << 16);
    return ICE_AQ_RC_OK;
}

/* ------------------------------------------------------------------ */
/* admin commands                                                      */

static bool e810_lock_held(E810Core *core, uint16_t res)
{
    return core->res_owned[res] &&
           core->res_access[res] == ICE_AQC_RES_ACCESS_WRITE;
}

/* error_offset / error_info at the start of the buffer */
static uint16_t e810_pkg_error(E810AqCmd *cmd, uint16_t rc, uint32_t offset,
                               uint32_t info)
{
    struct ice_aqc_download_pkg_resp *r = (void *)cmd->buf;

    if (cmd->buf &&
        cmd->buf_len >= offsetof(struct ice_aqc_download_pkg_resp,
                                 addr_high)) {
        r->error_offset = cpu_to_le32(offset);
        r->error_info = cpu_to_le32(info);
        cmd->buf_wb = true;
        cmd->resp_len = cmd->buf_len;
    }
    return rc;
}

/* 0x0C40 download_pkg */
uint16_t e810_aq_download_pkg(E810Core *core, E810AqCmd *cmd)
{
    E810Ddp *p = &core->ddp;
    bool last = cmd->params.download_pkg.flags & ICE_AQC_DOWNLOAD_PKG_LAST_BUF;
    uint16_t nsect = 0;
    uint32_t bad;

    if (!e810_aq_need_buf(cmd, ICE_MIN_S_DATA_END)) {
        return ICE_AQ_RC_EINVAL;
    }
    if (!e810_lock_held(core, ICE_AQC_RES_ID_GLBL_LOCK)) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: 0x0C40 without the global "
                      "config lock\n");
        return ICE_AQ_RC_EPERM;
    }
    if (!p->dl_busy) {
        /* the first buffer of a download: a new package replaces the old */
        p->active = false;
        p->dl_busy = true;
        p->dl_meta = false;
        p->dl_bufs = 0;
        p->meta_init_len = 0;
        memset(&core->flex, 0, sizeof(core->flex));
    }
    bad = e810_pkg_buf_check(cmd->buf, cmd->buf_len, &nsect);
    if (bad) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: 0x0C40 buffer %u malformed at "
                      "byte %u\n", p->dl_bufs, bad - 1);
        p->dl_busy = false;
        trace_e810_pkg_download(p->dl_bufs, nsect, last, ICE_AQ_RC_EBADBUF);
        return e810_pkg_error(cmd, ICE_AQ_RC_EBADBUF, bad - 1, p->dl_bufs);
    }
    /* the signing segment's metadata buffers carry no sections we use */
    if (!(le32_to_cpu(((struct ice_buf_hdr *)cmd->buf)->section_entry[0].type) &
          ICE_METADATA_BUF)) {
        e810_pkg_buf_walk(core, cmd->buf, nsect, e810_pkg_sect, true);
    }
    p->dl_bufs++;
    p->bufs_downloaded++;
    trace_e810_pkg_download(p->dl_bufs - 1, nsect, last, 0);
    if (!last) {
        return ICE_AQ_RC_OK;
    }

    p->dl_busy = false;
    if (!p->dl_meta) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: downloaded package has no "
                      "metadata section (version, name)\n");
        return e810_pkg_error(cmd, ICE_AQ_RC_EBADMAN, 0, p->dl_bufs);
    }
    p->active = true;
    memcpy(p->ver, p->dl_ver, sizeof(p->ver));
    memcpy(p->name, p->dl_name, sizeof(p->name));
    p->track_id = p->dl_track_id;
    e810_ddp_pf_reset(core);
    {
        g_autofree char *name = g_strndup((char *)p->name, sizeof(p->name));

        trace_e810_pkg_active(name, p->ver[0], p->ver[1], p->ver[2],
                              p->ver[3], p->dl_bufs);
    }
    return ICE_AQ_RC_OK;
}

/* 0x0C41 upload_section: fill the requested sections from the package */
uint16_t e810_aq_upload_section(E810Core *core, E810AqCmd *cmd)
{
    E810Ddp *p = &core->ddp;
    uint16_t nsect = 0;

    if (!e810_aq_need_buf(cmd, ICE_MIN_S_DATA_END)) {
        return ICE_AQ_RC_EINVAL;
    }
    if (!p->active) {
        return ICE_AQ_RC_ENOENT;
    }
    if (e810_pkg_buf_check(cmd->buf, cmd->buf_len, &nsect)) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: 0x0C41 buffer malformed\n");
        return ICE_AQ_RC_EINVAL;
    }
    for (uint16_t i = 0; i < nsect; i++) {
        const struct ice_section_entry *e =
            &((struct ice_buf_hdr *)cmd->buf)->section_entry[i];
        uint32_t type = le32_to_cpu(e->type);
        struct ice_meta_init_section *s =
            (void *)(cmd->buf + le16_to_cpu(e->offset));
        uint16_t size = le16_to_cpu(e->size);
        const struct ice_meta_init_section *have_s = (void *)p->meta_init;
        uint32_t count, first, have;

        trace_e810_pkg_upload(type, size);
        if (type != ICE_SID_RXPARSER_METADATA_INIT || size < sizeof(*s) ||
            p->meta_init_len < sizeof(*s)) {
            qemu_log_mask(LOG_UNIMP, "e810: 0x0C41 of section type %u not "
                          "modelled\n", type);
            return ICE_AQ_RC_ENOENT;
        }
        count = le16_to_cpu(s->count);
        first = le16_to_cpu(s->offset);
        have = le16_to_cpu(have_s->count);
        if (sizeof(*s) + count * ICE_META_INIT_ENTRY_SIZE > size ||
            first + count > have ||
            sizeof(*s) + (first + count) * ICE_META_INIT_ENTRY_SIZE >
            p->meta_init_len) {
            qemu_log_mask(LOG_GUEST_ERROR, "e810: 0x0C41 asks entries "
                          "%u..%u of %u\n", first, first + count, have);
            return ICE_AQ_RC_EINVAL;
        }
        memcpy(s->entry, have_s->entry + first * ICE_META_INIT_ENTRY_SIZE,
               count * ICE_META_INIT_ENTRY_SIZE);
    }
    cmd->buf_wb = true;
    cmd->resp_len = cmd->buf_len;
    return ICE_AQ_RC_OK;
}

/* 0x0C42 update_pkg */
uint16_t e810_aq_update_pkg(E810Core *core, E810AqCmd *cmd)
{
    uint16_t nsect = 0;
    uint32_t bad;

    if (!e810_aq_need_buf(cmd, ICE_MIN_S_DATA_END)) {
        return ICE_AQ_RC_EINVAL;
    }
    if (!core->ddp.active) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: 0x0C42 without a package\n");
        return ICE_AQ_RC_EPERM;
    }
    if (!e810_lock_held(core, ICE_AQC_RES_ID_CHNG_LOCK) &&
        !e810_lock_held(core, ICE_AQC_RES_ID_GLBL_LOCK)) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: 0x0C42 without the change "
                      "lock\n");
        return ICE_AQ_RC_EPERM;
    }
    bad = e810_pkg_buf_check(cmd->buf, cmd->buf_len, &nsect);
    if (bad) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: 0x0C42 buffer malformed at "
                      "byte %u\n", bad - 1);
        return e810_pkg_error(cmd, ICE_AQ_RC_EINVAL, bad - 1, 0);
    }
    e810_pkg_buf_walk(core, cmd->buf, nsect, e810_pkg_sect, false);
    core->ddp.updates++;
    trace_e810_pkg_update(nsect, cmd->params.download_pkg.flags &
                          ICE_AQC_DOWNLOAD_PKG_LAST_BUF);
    return ICE_AQ_RC_OK;
}

static void e810_pkg_info(struct ice_aqc_get_pkg_info *e, const uint8_t *ver,
                          const char *name, size_t name_len, uint32_t track,
                          bool nvm, bool active, bool boot)
{
    *e = (struct ice_aqc_get_pkg_info) {
        .ver = { ver[0], ver[1], ver[2], ver[3] },
        .track_id = cpu_to_le32(track),
        .is_in_nvm = nvm,
        .is_active = active,
        .is_active_at_boot = boot,
        .is_modified = 0,
    };
    memcpy(e->name, name, MIN(name_len, sizeof(e->name)));
}

/* 0x0C43 get_pkg_info_list: the NVM package and the downloaded one */
uint16_t e810_aq_get_pkg_info_list(E810Core *core, E810AqCmd *cmd)
{
    E810Ddp *p = &core->ddp;
    struct ice_aqc_get_pkg_info_resp *r = (void *)cmd->buf;
    uint32_t n = p->active ? 2 : 1;
    uint32_t size = sizeof(*r) + n * sizeof(r->pkg_info[0]);

    if (!e810_aq_need_buf(cmd, size)) {
        return ICE_AQ_RC_ENOMEM;
    }
    r->count = cpu_to_le32(n);
    e810_pkg_info(&r->pkg_info[0], e810_nvm_pkg_ver, E810_NVM_PKG_NAME,
                  strlen(E810_NVM_PKG_NAME), E810_NVM_PKG_TRACK_ID,
                  true, !p->active, true);
    if (p->active) {
        e810_pkg_info(&r->pkg_info[1], p->ver, (const char *)p->name,
                      sizeof(p->name), p->track_id, false, true, false);
    }
    cmd->resp_len = size;
    trace_e810_pkg_info(n, p->active);
    return ICE_AQ_RC_OK;
}

/* 0x020C set_vlan_mode_parameters: single VLAN mode only */
uint16_t e810_aq_set_vlan_mode(E810Core *core, E810AqCmd *cmd)
{
    const struct ice_aqc_set_vlan_mode *m = (void *)cmd->buf;
    uint8_t prio, rdma;

    if (!e810_aq_need_buf(cmd, sizeof(*m))) {
        return ICE_AQ_RC_EINVAL;
    }
    prio = m->l2tag_prio_tagging & ICE_AQ_VLAN_PRIO_TAG_M;
    rdma = m->rdma_packet;
    trace_e810_vlan_mode_set(prio, rdma, m->mng_vlan_prot_id);
    if (prio > ICE_AQ_VLAN_PRIO_TAG_MAX) {
        return ICE_AQ_RC_EINVAL;
    }
    if (rdma == ICE_AQ_DVM_VLAN_RDMA_PKT_FLAG_SETTING ||
        prio != ICE_AQ_VLAN_PRIO_TAG_INNER_CTAG) {
        /* double VLAN mode: outer-tag handling is not modelled */
        qemu_log_mask(LOG_UNIMP, "e810: double VLAN mode not modelled, "
                      "refused\n");
        return ICE_AQ_RC_ENOSYS;
    }
    core->ddp.vlan_mode = 0;
    core->ddp.vlan_prio_tagging = prio;
    return ICE_AQ_RC_OK;
}

/* 0x020D get_vlan_mode_parameters */
uint16_t e810_aq_get_vlan_mode(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_get_vlan_mode *m = (void *)cmd->buf;

    if (!e810_aq_need_buf(cmd, sizeof(*m))) {
        return ICE_AQ_RC_EINVAL;
    }
    *m = (struct ice_aqc_get_vlan_mode) {
        .vlan_mode = core->ddp.vlan_mode & ICE_AQ_VLAN_MODE_DVM_ENA,
        .l2tag_prio_tagging = core->ddp.vlan_prio_tagging,
    };
    cmd->resp_len = sizeof(*m);
    trace_e810_vlan_mode_get(m->vlan_mode, m->l2tag_prio_tagging);
    return ICE_AQ_RC_OK;
}

/* ------------------------------------------------------------------ */
/* migration                                                           */

static int e810_ddp_post_load(void *opaque, int version_id)
{
    E810Ddp *p = opaque;

    if (p->meta_init_len > E810_PKG_META_INIT_MAX) {
        return -EINVAL;
    }
    return 0;
}

const VMStateDescription e810_vmstate_ddp_state = {
    .name = "e810/ddp",
    .version_id = 1,
    .minimum_version_id = 1,
    .post_load = e810_ddp_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_BOOL(active, E810Ddp),
        VMSTATE_UINT8_ARRAY(ver, E810Ddp, 4),
        VMSTATE_UINT8_ARRAY(name, E810Ddp, E810_PKG_NAME_SIZE),
        VMSTATE_UINT32(track_id, E810Ddp),
        VMSTATE_BOOL(dl_busy, E810Ddp),
        VMSTATE_BOOL(dl_meta, E810Ddp),
        VMSTATE_UINT8_ARRAY(dl_ver, E810Ddp, 4),
        VMSTATE_UINT8_ARRAY(dl_name, E810Ddp, E810_PKG_NAME_SIZE),
        VMSTATE_UINT32(dl_track_id, E810Ddp),
        VMSTATE_UINT32(dl_bufs, E810Ddp),
        VMSTATE_UINT32(bufs_downloaded, E810Ddp),
        VMSTATE_UINT32(updates, E810Ddp),
        VMSTATE_UINT16(meta_init_len, E810Ddp),
        VMSTATE_UINT8_ARRAY(meta_init, E810Ddp, E810_PKG_META_INIT_MAX),
        VMSTATE_UINT8(vlan_mode, E810Ddp),
        VMSTATE_UINT8(vlan_prio_tagging, E810Ddp),
        VMSTATE_END_OF_LIST()
    }
};

static const VMStateDescription e810_vmstate_flex_tables = {
    .name = "e810/flex-tables",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT8_ARRAY(xlt1, E810FlexTables, E810_FLEX_PTYPES),
        VMSTATE_UINT16_ARRAY(xlt2, E810FlexTables, E810_FLEX_VSIS),
        VMSTATE_UINT8_2DARRAY(tcam_key, E810FlexTables, E810_FLEX_TCAM,
                              E810_FLEX_KEY_SZ),
        VMSTATE_UINT8_ARRAY(tcam_prof, E810FlexTables, E810_FLEX_TCAM),
        VMSTATE_UINT8_2DARRAY(fv_prot, E810FlexTables, E810_FLEX_PROFS,
                              E810_FLEX_FVW),
        VMSTATE_UINT16_2DARRAY(fv_off, E810FlexTables, E810_FLEX_PROFS,
                               E810_FLEX_FVW),
        VMSTATE_END_OF_LIST()
    }
};

const VMStateDescription e810_vmstate_flex = {
    .name = "e810/flex",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_STRUCT(cur, E810Flex, 1, e810_vmstate_flex_tables,
                       E810FlexTables),
        VMSTATE_STRUCT(dflt, E810Flex, 1, e810_vmstate_flex_tables,
                       E810FlexTables),
        VMSTATE_UINT8_2DARRAY(pool_used, E810Flex, E810_POOL_NUM,
                              E810_POOL_BYTES),
        VMSTATE_UINT8_2DARRAY(pool_rsvd, E810Flex, E810_POOL_NUM,
                              E810_POOL_BYTES),
        VMSTATE_UINT32_ARRAY(glqf_hsymm, E810Flex, E810_FLEX_PROF_REGS),
        VMSTATE_UINT32_ARRAY(glqf_fdinset, E810Flex, E810_FLEX_PROF_REGS),
        VMSTATE_UINT32_ARRAY(glqf_fdswap, E810Flex, E810_FLEX_PROF_REGS),
        VMSTATE_UINT32(pfqf_fd_size, E810Flex),
        VMSTATE_END_OF_LIST()
    }
};

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

/* struct ice_buf_hdr limits (ice_ddp.h) */
#define ICE_PKG_BUF_SIZE            4096
#define ICE_MIN_S_COUNT             1
#define ICE_MAX_S_COUNT             511
#define ICE_MIN_S_DATA_END          12
#define ICE_MAX_S_DATA_END          4096
#define ICE_BUF_HDR_SIZE            4
#define ICE_SECT_ENTRY_SIZE         8
#define ICE_METADATA_BUF            0x80000000u

#define ICE_AQC_DOWNLOAD_PKG_LAST_BUF   0x01
#define ICE_AQ_RC_EBADMAN           27
#define ICE_AQ_RC_EBADBUF           28

/* section ids (ice_ddp.h) */
#define ICE_SID_METADATA            1
#define ICE_SID_XLT1_FD             32
#define ICE_SID_XLT2_FD             33
#define ICE_SID_PROFID_TCAM_FD      34
#define ICE_SID_PROFID_REDIR_FD     35
#define ICE_SID_FLD_VEC_FD          36
#define ICE_SID_XLT1_RSS            42
#define ICE_SID_XLT2_RSS            43
#define ICE_SID_PROFID_TCAM_RSS     44
#define ICE_SID_PROFID_REDIR_RSS    45
#define ICE_SID_FLD_VEC_RSS         46
#define ICE_SID_RXPARSER_METADATA_INIT  58

#define ICE_META_SECT_SIZE          36      /* ver 4, name 28, track_id 4 */
#define ICE_TCAM_ENTRY_SIZE         13      /* addr 2, key 10, prof_id 1 */
#define ICE_FV_WORD_SIZE            4       /* prot_id, off (le16), rsvd */
#define ICE_META_INIT_ENTRY_SIZE    24      /* 192 bits */

/* FD block sizes (blk_sizes[ICE_BLK_FD]) */
#define E810_FD_TCAM                512
#define E810_FD_PROFS               128

/* get_pkg_info_list: struct ice_aqc_get_pkg_info is 40 bytes */
#define ICE_PKG_INFO_SIZE           40
#define ICE_PKG_CNT                 4
/* the package the NVM holds ("in NVM", "active at boot") */
static const uint8_t e810_nvm_pkg_ver[4] = { 1, 3, 30, 0 };
#define E810_NVM_PKG_NAME           "ICE OS Default Package"
#define E810_NVM_PKG_TRACK_ID       0xc0000001

/* 0x020C/0x020D (struct ice_aqc_set_vlan_mode / ice_aqc_get_vlan_mode) */
#define ICE_AQ_VLAN_MODE_DVM_ENA            0x01
#define ICE_AQ_VLAN_PRIO_TAG_MAX            0x4
#define ICE_AQ_VLAN_PRIO_TAG_INNER_CTAG     0x4
#define ICE_AQ_SVM_VLAN_RDMA_PKT_FLAG       0x10
#define ICE_AQ_DVM_VLAN_RDMA_PKT_FLAG       0x1A
#define E810_SET_VLAN_MODE_SIZE             100
#define E810_GET_VLAN_MODE_SIZE             100

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
    uint16_t count, data_end;

    if (len < ICE_MIN_S_DATA_END) {
        return 1;
    }
    count = e810_le16(buf);
    data_end = e810_le16(buf + 2);
    if (count < ICE_MIN_S_COUNT || count > ICE_MAX_S_COUNT) {
        return 1;
    }
    if (data_end < ICE_MIN_S_DATA_END || data_end > ICE_MAX_S_DATA_END ||
        data_end > len ||
        ICE_BUF_HDR_SIZE + (uint32_t)count * ICE_SECT_ENTRY_SIZE > data_end) {
        return 3;
    }
    for (uint16_t i = 0; i < count; i++) {
        const uint8_t *e = buf + ICE_BUF_HDR_SIZE + i * ICE_SECT_ENTRY_SIZE;
        uint32_t off = e810_le16(e + 4), size = e810_le16(e + 6);

        if (off < ICE_BUF_HDR_SIZE + (uint32_t)count * ICE_SECT_ENTRY_SIZE ||
            off + size > data_end) {
            return ICE_BUF_HDR_SIZE + i * ICE_SECT_ENTRY_SIZE + 5;
        }
    }
    *nsect = count;
    return 0;
}

static void e810_pkg_buf_walk(E810Core *core, const uint8_t *buf,
                              uint16_t nsect, E810SectFn fn, bool dflt)
{
    for (uint16_t i = 0; i < nsect; i++) {
        const uint8_t *e = buf + ICE_BUF_HDR_SIZE + i * ICE_SECT_ENTRY_SIZE;

        fn(core, e810_le32(e), buf + e810_le16(e + 4), e810_le16(e + 6),
           dflt);
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
    uint32_t count, off, esz = xlt2 ? 2 : 1;

    if (size < 4) {
        goto bad;
    }
    count = e810_le16(s);
    off = e810_le16(s + 2);
    if (4 + count * esz > size) {
        goto bad;
    }
    for (uint32_t i = 0; i < count; i++) {
        uint32_t idx = off + i;

        if (xlt2) {
            if (idx < E810_FLEX_VSIS) {
                t->xlt2[idx] = e810_le16(s + 4 + 2 * i);
            }
        } else if (idx < E810_FLEX_PTYPES) {
            t->xlt1[idx] = s[4 + i];
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
    uint32_t count = size >= 2 ? e810_le16(s) : 0;

    if (size < 2 || 2 + count * ICE_TCAM_ENTRY_SIZE > size) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: package profile TCAM section "
                      "of %u bytes malformed\n", size);
        return;
    }
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *e = s + 2 + i * ICE_TCAM_ENTRY_SIZE;
        uint16_t addr = e810_le16(e);
        uint8_t prof = e[12];
        bool live = e810_tcam_key_live(e + 2);

        if (t && addr < E810_FLEX_TCAM) {
            memcpy(t->tcam_key[addr], e + 2, E810_FLEX_KEY_SZ);
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

            memcpy(k, e + 2, E810_FLEX_KEY_SZ);
            trace_e810_flex_tcam(addr, prof, live,
                                 ldq_le_p(k) & 0xFFFFFFFFFFull,
                                 ldq_le_p(k + 5) & 0xFFFFFFFFFFull);
        }
    }
}

/* {count, offset, ice_fv_word[count * fvw]} */
static void e810_flex_es(E810FlexTables *t, const uint8_t *s, uint16_t size)
{
    uint32_t count, off;

    if (size < 4) {
        goto bad;
    }
    count = e810_le16(s);
    off = e810_le16(s + 2);
    if (4 + count * E810_FLEX_FVW * ICE_FV_WORD_SIZE > size) {
        goto bad;
    }
    for (uint32_t i = 0; i < count; i++) {
        uint32_t prof = off + i;

        if (prof >= E810_FLEX_PROFS) {
            break;
        }
        for (int w = 0; w < E810_FLEX_FVW; w++) {
            const uint8_t *fv = s + 4 +
                                (i * E810_FLEX_FVW + w) * ICE_FV_WORD_SIZE;

            t->fv_prot[prof][w] = fv[0];
            t->fv_off[prof][w] = e810_le16(fv + 1);
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
        if (dflt && size >= ICE_META_SECT_SIZE) {
            memcpy(p->dl_ver, s, 4);
            memcpy(p->dl_name, s + 4, E810_PKG_NAME_SIZE);
            p->dl_track_id = e810_le32(s + 32);
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
    /* ICE_AQ_RES_GLBL_DONE: a package is loaded, nothing to do */
    return core->ddp.active ? 2 : 0;
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
    case 0x58:      /* ICE_AQC_RES_TYPE_FD_PROF_BLDR_PROFID */
        *pool = E810_POOL_FD_PROF;
        return true;
    case 0x59:      /* ICE_AQC_RES_TYPE_FD_PROF_BLDR_TCAM */
        *pool = E810_POOL_FD_TCAM;
        return true;
    case 0x60:      /* ICE_AQC_RES_TYPE_HASH_PROF_BLDR_PROFID */
        *pool = E810_POOL_RSS_PROF;
        return true;
    case 0x61:      /* ICE_AQC_RES_TYPE_HASH_PROF_BLDR_TCAM */
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
    uint32_t *cnt = type == 0x22 ? &g : &b;
    uint32_t max = type == 0x22 ? E810_FD_GSIZE : E810_FD_BSIZE;

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
    return core->res_owned[res] && core->res_access[res] == E810_RES_WRITE;
}

/* error_offset / error_info into the first 8 bytes of the buffer */
static uint16_t e810_pkg_error(E810AqCmd *cmd, uint16_t rc, uint32_t offset,
                               uint32_t info)
{
    if (cmd->buf && cmd->buf_len >= 8) {
        e810_st32(cmd->buf, offset);
        e810_st32(cmd->buf + 4, info);
        cmd->buf_wb = true;
        cmd->resp_len = cmd->buf_len;
    }
    return rc;
}

/* 0x0C40 download_pkg */
uint16_t e810_aq_download_pkg(E810Core *core, E810AqCmd *cmd)
{
    E810Ddp *p = &core->ddp;
    bool last = cmd->params[0] & ICE_AQC_DOWNLOAD_PKG_LAST_BUF;
    uint16_t nsect = 0;
    uint32_t bad;

    if (!e810_aq_need_buf(cmd, ICE_MIN_S_DATA_END)) {
        return ICE_AQ_RC_EINVAL;
    }
    if (!e810_lock_held(core, E810_RES_GLOBAL_LOCK)) {
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
    if (!(e810_le32(cmd->buf + ICE_BUF_HDR_SIZE) & ICE_METADATA_BUF)) {
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
        const uint8_t *e = cmd->buf + ICE_BUF_HDR_SIZE +
                           i * ICE_SECT_ENTRY_SIZE;
        uint32_t type = e810_le32(e);
        uint8_t *s = cmd->buf + e810_le16(e + 4);
        uint16_t size = e810_le16(e + 6);
        uint32_t count, first, have;

        trace_e810_pkg_upload(type, size);
        if (type != ICE_SID_RXPARSER_METADATA_INIT || size < 4 ||
            p->meta_init_len < 4) {
            qemu_log_mask(LOG_UNIMP, "e810: 0x0C41 of section type %u not "
                          "modelled\n", type);
            return ICE_AQ_RC_ENOENT;
        }
        /* {count, offset, entry[count]}, 24-byte entries */
        count = e810_le16(s);
        first = e810_le16(s + 2);
        have = e810_le16(p->meta_init);
        if (4 + count * ICE_META_INIT_ENTRY_SIZE > size ||
            first + count > have ||
            4 + (first + count) * ICE_META_INIT_ENTRY_SIZE >
            p->meta_init_len) {
            qemu_log_mask(LOG_GUEST_ERROR, "e810: 0x0C41 asks entries "
                          "%u..%u of %u\n", first, first + count, have);
            return ICE_AQ_RC_EINVAL;
        }
        memcpy(s + 4, p->meta_init + 4 + first * ICE_META_INIT_ENTRY_SIZE,
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
    if (!e810_lock_held(core, E810_RES_CHANGE_LOCK) &&
        !e810_lock_held(core, E810_RES_GLOBAL_LOCK)) {
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
    trace_e810_pkg_update(nsect, cmd->params[0] &
                          ICE_AQC_DOWNLOAD_PKG_LAST_BUF);
    return ICE_AQ_RC_OK;
}

static void e810_pkg_info(uint8_t *e, const uint8_t *ver, const char *name,
                          size_t name_len, uint32_t track, bool nvm,
                          bool active, bool boot)
{
    memset(e, 0, ICE_PKG_INFO_SIZE);
    memcpy(e, ver, 4);
    memcpy(e + 4, name, MIN(name_len, E810_PKG_NAME_SIZE));
    e810_st32(e + 32, track);
    e[36] = nvm;
    e[37] = active;
    e[38] = boot;
    e[39] = 0;                  /* is_modified */
}

/* 0x0C43 get_pkg_info_list: the NVM package and the downloaded one */
uint16_t e810_aq_get_pkg_info_list(E810Core *core, E810AqCmd *cmd)
{
    E810Ddp *p = &core->ddp;
    uint32_t n = p->active ? 2 : 1;

    if (!e810_aq_need_buf(cmd, 4 + n * ICE_PKG_INFO_SIZE)) {
        return ICE_AQ_RC_ENOMEM;
    }
    memset(cmd->buf, 0, 4 + n * ICE_PKG_INFO_SIZE);
    e810_st32(cmd->buf, n);
    e810_pkg_info(cmd->buf + 4, e810_nvm_pkg_ver, E810_NVM_PKG_NAME,
                  strlen(E810_NVM_PKG_NAME), E810_NVM_PKG_TRACK_ID,
                  true, !p->active, true);
    if (p->active) {
        e810_pkg_info(cmd->buf + 4 + ICE_PKG_INFO_SIZE, p->ver,
                      (const char *)p->name, sizeof(p->name), p->track_id,
                      false, true, false);
    }
    cmd->resp_len = 4 + n * ICE_PKG_INFO_SIZE;
    trace_e810_pkg_info(n, p->active);
    return ICE_AQ_RC_OK;
}

/* 0x020C set_vlan_mode_parameters: single VLAN mode only */
uint16_t e810_aq_set_vlan_mode(E810Core *core, E810AqCmd *cmd)
{
    uint8_t prio, rdma;

    if (!e810_aq_need_buf(cmd, E810_SET_VLAN_MODE_SIZE)) {
        return ICE_AQ_RC_EINVAL;
    }
    prio = cmd->buf[1] & 0x7;
    rdma = cmd->buf[66];
    trace_e810_vlan_mode_set(prio, rdma, cmd->buf[69]);
    if (prio > ICE_AQ_VLAN_PRIO_TAG_MAX) {
        return ICE_AQ_RC_EINVAL;
    }
    if (rdma == ICE_AQ_DVM_VLAN_RDMA_PKT_FLAG ||
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
    if (!e810_aq_need_buf(cmd, E810_GET_VLAN_MODE_SIZE)) {
        return ICE_AQ_RC_EINVAL;
    }
    memset(cmd->buf, 0, E810_GET_VLAN_MODE_SIZE);
    cmd->buf[0] = core->ddp.vlan_mode & ICE_AQ_VLAN_MODE_DVM_ENA;
    cmd->buf[1] = core->ddp.vlan_prio_tagging;
    cmd->resp_len = E810_GET_VLAN_MODE_SIZE;
    trace_e810_vlan_mode_get(cmd->buf[0], cmd->buf[1]);
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

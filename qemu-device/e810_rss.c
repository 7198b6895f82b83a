/*
 * QEMU Intel E810 ("ice") Ethernet controller: receive-side scaling
 *
 * State the driver programs:
 *  - 0x0B02/0x0B04 set/get RSS key, per VSI: 40-byte key + 12-byte
 *    extension (struct ice_aqc_get_set_rss_keys); the model hashes with
 *    all 52 bytes (the input is at most 24 words = 48 bytes);
 *  - 0x0B03/0x0B05 set/get RSS LUT: type VSI (64 entries, per VSI), PF
 *    (2048, one per PF) or global (512, 16 of them), flags as
 *    ice_aq_get_set_rss_lut() builds them; the VSI's Q_OPT section says
 *    which table it uses (ice_set_rss_vsi_ctx());
 *  - the hash input: per packet type, the RSS block's tables (e810_ddp.c)
 *    pick a profile whose field vector names the header words to hash;
 *    GLQF_HMASK/HMASK_SEL mask words, GLQF_HSYMM XORs them (symmetric).
 * The RSS block's field vector is reversed (blk_sizes[].reverse): the
 * driver's first extracted word sits at index 23, so the input is read
 * from index 23 down to 0, which puts e.g. IPv4 SA, DA, TCP source and
 * destination port in the order of the Microsoft Toeplitz definition.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "net/checksum.h"
#include "net/eth.h"
#include "e810_core.h"
#include "e810_adminq.h"
#include "e810_ddp.h"
#include "e810_rss.h"
#include "qapi/error.h"
#include "qapi/qapi-types-e810.h"
#include "trace.h"

QEMU_BUILD_BUG_ON(E810_RSS_VSI_SLOTS != E810_NUM_VSI_TRACKED);
QEMU_BUILD_BUG_ON(E810_RSS_KEY_SIZE < 2 * E810_FLEX_FVW + 4);

QEMU_BUILD_BUG_ON(E810_RSS_KEY_SIZE !=
                  ICE_AQC_GET_SET_RSS_KEY_DATA_RSS_KEY_SIZE +
                  ICE_AQC_GET_SET_RSS_KEY_DATA_HASH_KEY_SIZE);

/* ice_prot_id values the extraction understands */
#define ICE_PROT_MAC_OF_OR_S            1
#define ICE_PROT_ETYPE_OL               9
#define ICE_PROT_IPV4_OF_OR_S           32
#define ICE_PROT_IPV6_OF_OR_S           40
#define ICE_PROT_TCP_IL                 49
#define ICE_PROT_UDP_IL_OR_S            53
#define ICE_PROT_SCTP_IL                96
#define ICE_PROT_ICMP_IL                98
#define ICE_PROT_ICMPV6_IL              100

#define GLQF_HSYMM_ENABLE_BIT           0x80

/* ------------------------------------------------------------------ */
/* VSIs                                                                */

static int e810_rss_slot(E810Core *core, uint16_t vsi_num)
{
    for (int i = 0; i < E810_NUM_VSI_TRACKED; i++) {
        if (core->vsi[i].in_use && core->vsi[i].vsi_num == vsi_num) {
            return i;
        }
    }
    return -1;
}

static int e810_rss_main_slot(E810Core *core)
{
    int best = -1;

    for (int i = 0; i < E810_NUM_VSI_TRACKED; i++) {
        E810Vsi *v = &core->vsi[i];

        if (!v->in_use) {
            continue;
        }
        if ((e810_vsi_props(v)->q_opt_rss & ICE_AQ_VSI_Q_OPT_RSS_LUT_M) ==
            ICE_AQ_VSI_Q_OPT_RSS_LUT_PF) {
            return i;
        }
        /* without a PF LUT user: the first VSI the driver created */
        if (best < 0 || v->vsi_num < core->vsi[best].vsi_num) {
            best = i;
        }
    }
    return best;
}

void e810_rss_vsi_added(E810Core *core, int slot)
{
    E810Rss *r = &core->rss;

    if (slot < 0 || slot >= E810_RSS_VSI_SLOTS) {
        return;
    }
    memset(r->key[slot], 0, sizeof(r->key[slot]));
    memset(r->vsi_lut[slot], 0, sizeof(r->vsi_lut[slot]));
    r->key_set[slot] = 0;
    r->vsi_lut_set[slot] = 0;
}

void e810_rss_reset(E810Core *core)
{
    memset(&core->rss, 0, sizeof(core->rss));
}

/* the VSI a 0x0B0x command names, or -1 with a guest error */
/* (the key and LUT commands have vsi_id in the same place) */
QEMU_BUILD_BUG_ON(offsetof(struct ice_aqc_get_set_rss_key, vsi_id) !=
                  offsetof(struct ice_aqc_get_set_rss_lut, vsi_id));

static int e810_rss_cmd_slot(E810Core *core, E810AqCmd *cmd)
{
    uint16_t id = le16_to_cpu(cmd->params.get_set_rss_key.vsi_id);
    int slot;

    if (!(id & ICE_AQC_GSET_RSS_KEY_VSI_VALID)) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: AQ 0x%04x: VSI id 0x%x "
                      "without the valid bit\n", cmd->opcode, id);
        return -1;
    }
    slot = e810_rss_slot(core, id & ICE_AQC_GSET_RSS_KEY_VSI_ID_M);
    if (slot < 0) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: AQ 0x%04x: unknown VSI %u\n",
                      cmd->opcode, id & ICE_AQC_GSET_RSS_KEY_VSI_ID_M);
    }
    return slot;
}

/* ------------------------------------------------------------------ */
/* admin commands                                                      */

/* 0x0B02 set_rss_key */
uint16_t e810_aq_set_rss_key(E810Core *core, E810AqCmd *cmd)
{
    int slot = e810_rss_cmd_slot(core, cmd);
    uint16_t n;

    if (slot < 0) {
        return ICE_AQ_RC_ENOENT;
    }
    /* the standard 40-byte key is required, the extension optional */
    if (!e810_aq_need_buf(cmd, ICE_AQC_GET_SET_RSS_KEY_DATA_RSS_KEY_SIZE)) {
        return ICE_AQ_RC_EINVAL;
    }
    n = MIN(cmd->buf_len, E810_RSS_KEY_SIZE);
    memset(core->rss.key[slot], 0, E810_RSS_KEY_SIZE);
    memcpy(core->rss.key[slot], cmd->buf, n);
    core->rss.key_set[slot] = 1;
    trace_e810_rss_key_set(core->vsi[slot].vsi_num, n);
    return ICE_AQ_RC_OK;
}

/* 0x0B04 get_rss_key */
uint16_t e810_aq_get_rss_key(E810Core *core, E810AqCmd *cmd)
{
    int slot = e810_rss_cmd_slot(core, cmd);
    uint16_t n;

    if (slot < 0) {
        return ICE_AQ_RC_ENOENT;
    }
    if (!e810_aq_need_buf(cmd, ICE_AQC_GET_SET_RSS_KEY_DATA_RSS_KEY_SIZE)) {
        return ICE_AQ_RC_EINVAL;
    }
    n = MIN(cmd->buf_len, E810_RSS_KEY_SIZE);
    memcpy(cmd->buf, core->rss.key[slot], n);
    cmd->resp_len = n;
    trace_e810_rss_key_get(core->vsi[slot].vsi_num, n);
    return ICE_AQ_RC_OK;
}

/*
 * The table a 0x0B03/0x0B05 names (NULL + guest error if the flags and
 * the buffer disagree); *size its entries.
 */
static uint8_t *e810_rss_lut_for(E810Core *core, E810AqCmd *cmd, int slot,
                                 uint32_t *size, bool get)
{
    uint16_t flags = le16_to_cpu(cmd->params.get_set_rss_lut.flags);
    uint16_t type = flags & ICE_AQC_GSET_RSS_LUT_TABLE_TYPE_M;
    uint16_t sz = (flags & ICE_AQC_GSET_RSS_LUT_TABLE_SIZE_M) >>
                  ICE_AQC_GSET_RSS_LUT_TABLE_SIZE_S;
    uint8_t *lut;

    switch (type) {
    case ICE_LUT_VSI:
        *size = E810_RSS_LUT_VSI_SIZE;
        lut = core->rss.vsi_lut[slot];
        if (sz != 0) {
            goto bad;
        }
        break;
    case ICE_LUT_PF:
        *size = E810_RSS_LUT_PF_SIZE;
        lut = core->rss.pf_lut;
        /* older drivers (6.1) read the PF and global tables without a
         * size flag: __ice_aq_get_set_rss_lut() sets it for sets only */
        if (sz != ICE_AQC_GSET_RSS_LUT_TABLE_SIZE_2K_FLAG && !(get && !sz)) {
            goto bad;
        }
        break;
    case ICE_LUT_GLOBAL:
        *size = E810_RSS_LUT_GLOBAL_SIZE;
        lut = core->rss.glob_lut[(flags & ICE_AQC_GSET_RSS_LUT_GLOBAL_IDX_M) >>
                                 ICE_AQC_GSET_RSS_LUT_GLOBAL_IDX_S];
        if (sz != ICE_AQC_GSET_RSS_LUT_TABLE_SIZE_512_FLAG && !(get && !sz)) {
            goto bad;
        }
        break;
    default:
        goto bad;
    }
    if (!cmd->buf || cmd->buf_len != *size) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: AQ 0x%04x: LUT of %u entries "
                      "with a %u-byte buffer\n", cmd->opcode, *size,
                      cmd->buf ? cmd->buf_len : 0);
        return NULL;
    }
    return lut;
bad:
    qemu_log_mask(LOG_GUEST_ERROR, "e810: AQ 0x%04x: LUT flags 0x%x "
                  "invalid\n", cmd->opcode, flags);
    return NULL;
}

/* 0x0B03 set_rss_lut */
uint16_t e810_aq_set_rss_lut(E810Core *core, E810AqCmd *cmd)
{
    int slot = e810_rss_cmd_slot(core, cmd);
    uint32_t size = 0;
    uint8_t *lut;

    if (slot < 0) {
        return ICE_AQ_RC_ENOENT;
    }
    lut = e810_rss_lut_for(core, cmd, slot, &size, false);
    if (!lut) {
        return ICE_AQ_RC_EINVAL;
    }
    memcpy(lut, cmd->buf, size);
    if (lut == core->rss.pf_lut) {
        core->rss.pf_lut_set = 1;
    } else if (lut == core->rss.vsi_lut[slot]) {
        core->rss.vsi_lut_set[slot] = 1;
    }
    trace_e810_rss_lut_set(core->vsi[slot].vsi_num,
                           le16_to_cpu(cmd->params.get_set_rss_lut.flags),
                           size);
    return ICE_AQ_RC_OK;
}

/* 0x0B05 get_rss_lut */
uint16_t e810_aq_get_rss_lut(E810Core *core, E810AqCmd *cmd)
{
    int slot = e810_rss_cmd_slot(core, cmd);
    uint32_t size = 0;
    uint8_t *lut;

    if (slot < 0) {
        return ICE_AQ_RC_ENOENT;
    }
    lut = e810_rss_lut_for(core, cmd, slot, &size, true);
    if (!lut) {
        return ICE_AQ_RC_EINVAL;
    }
    memcpy(cmd->buf, lut, size);
    cmd->resp_len = size;
    trace_e810_rss_lut_get(core->vsi[slot].vsi_num,
                           le16_to_cpu(cmd->params.get_set_rss_lut.flags),
                           size);
    return ICE_AQ_RC_OK;
}

/* ------------------------------------------------------------------ */
/* classification                                                      */

typedef struct E810RssResult {
    uint16_t queue;         /* absolute PF Rx queue (QRX_CTRL index) */
    uint32_t hash;          /* valid when 'hashed' */
    bool hashed;            /* a profile matched: set RSS_VALID, rss_hash */
} E810RssResult;

static uint16_t e810_rd16(const uint8_t *f, size_t len, size_t off)
{
    return off + 2 <= len ? lduw_be_p(f + off) : 0;
}

/* where the header a field-vector word names starts, -1 if absent */
static int e810_rss_prot_base(const E810RxParsed *p, uint8_t prot)
{
    switch (prot) {
    case ICE_PROT_MAC_OF_OR_S:
        return 0;
    case ICE_PROT_ETYPE_OL:
        return p->etype;
    case ICE_PROT_IPV4_OF_OR_S:
        return p->v6 ? -1 : p->l3;
    case ICE_PROT_IPV6_OF_OR_S:
        return p->v6 ? p->l3 : -1;
    case ICE_PROT_TCP_IL:
        return p->l4proto == IP_PROTO_TCP ? p->l4 : -1;
    case ICE_PROT_UDP_IL_OR_S:
        return p->l4proto == IP_PROTO_UDP ? p->l4 : -1;
    case ICE_PROT_SCTP_IL:
        return p->l4proto == IP_PROTO_SCTP ? p->l4 : -1;
    case ICE_PROT_ICMP_IL:
        return !p->v6 && p->l4proto == E810_IPPROTO_ICMP ? p->l4 : -1;
    case ICE_PROT_ICMPV6_IL:
        return p->v6 && p->l4proto == E810_IPPROTO_ICMPV6 ? p->l4 : -1;
    }
    return -1;
}

/* TCAM bit rule: (key, invert) = (1,1) any, (1,0) 0, (0,1) 1, (0,0) never */
static bool e810_tcam_match(const uint8_t *key, const uint8_t *in)
{
    for (int i = 0; i < E810_FLEX_KEY_SZ / 2; i++) {
        uint8_t k = key[i], ki = key[i + E810_FLEX_KEY_SZ / 2];

        /* fails: must be 0 and is 1, must be 1 and is 0, never match */
        if ((uint8_t)((~ki & in[i]) | (~k & ~in[i]))) {
            return false;
        }
    }
    return true;
}

/* the RSS profile for a packet type on a VSI, -1 if none matches */
static int e810_rss_profile(E810Core *core, uint16_t vsi_num, uint16_t ptype)
{
    const E810FlexTables *t = &core->flex.cur;
    uint16_t vsig = vsi_num < E810_FLEX_VSIS ? t->xlt2[vsi_num] : 0;
    /* struct ice_prof_id_key: flags (le16), xlt1 (PTG), xlt2_cdid (le16) */
    uint8_t in[5] = {
        0, 0, ptype < E810_FLEX_PTYPES ? t->xlt1[ptype] : 0,
        vsig & 0xFF, vsig >> 8,
    };

    for (int addr = 0; addr < E810_FLEX_TCAM; addr++) {
        if (e810_tcam_match(t->tcam_key[addr], in)) {
            return t->tcam_prof[addr] < E810_FLEX_PROFS ?
                   t->tcam_prof[addr] : -1;
        }
    }
    return -1;
}

/* Toeplitz over the profile's words; false if the profile has none */
static bool e810_rss_hash(E810Core *core, int slot, int prof,
                          const uint8_t *f, size_t len, const E810RxParsed *p,
                          uint8_t hfunc, uint32_t *hash)
{
    const E810FlexTables *t = &core->flex.cur;
    uint16_t w[E810_FLEX_FVW], orig[E810_FLEX_FVW];
    bool valid[E810_FLEX_FVW];
    uint8_t input[2 * E810_FLEX_FVW];
    uint8_t key[E810_RSS_KEY_SIZE];
    uint32_t n = 0, sel, result = 0;
    bool present = false;
    net_toeplitz_key tk;

    for (int i = 0; i < E810_FLEX_FVW; i++) {
        uint8_t prot = t->fv_prot[prof][i];
        int base;

        valid[i] = prot != E810_FLEX_PROT_INVAL &&
                   t->fv_off[prof][i] != E810_FLEX_OFF_INVAL;
        base = valid[i] ? e810_rss_prot_base(p, prot) : -1;
        w[i] = base >= 0 ? e810_rd16(f, len, base + t->fv_off[prof][i]) : 0;
        present |= base >= 0;
    }
    if (!present) {
        /*
         * None of the headers the profile hashes is in the frame (e.g. a
         * catch-all profile for packet-type group 0 meeting ARP): no hash
         */
        return false;
    }
    /* GLQF_HMASK_SEL(prof) enables GLQF_HMASK(i): {FV index, 16-bit mask} */
    sel = core->glqf_hmask_sel[prof];
    for (int i = 0; i <= GLQF_HMASK_MAX_INDEX; i++) {
        if (sel & (1u << i)) {
            uint32_t m = core->glqf_hmask[i];

            if ((m & 0x1F) < E810_FLEX_FVW) {
                w[m & 0x1F] &= m >> 16;
            }
        }
    }
    /* GLQF_HSYMM: word i ^= word dst (symmetric hashing) */
    memcpy(orig, w, sizeof(orig));
    for (int i = 0; i < E810_FLEX_FVW; i++) {
        uint8_t b = core->flex.glqf_hsymm[(i / 4) * 128 + prof] >>
                    ((i % 4) * 8);

        if ((b & GLQF_HSYMM_ENABLE_BIT) && (b & 0x1F) < E810_FLEX_FVW) {
            w[i] = orig[i] ^ orig[b & 0x1F];
        }
    }
    /* reversed field vector: the first extracted word is the last */
    for (int i = E810_FLEX_FVW - 1; i >= 0; i--) {
        if (valid[i]) {
            input[n++] = w[i] >> 8;
            input[n++] = w[i];
        }
    }
    if (!n) {
        return false;
    }
    if (hfunc != ICE_AQ_VSI_Q_OPT_RSS_TPLZ &&
        hfunc != ICE_AQ_VSI_Q_OPT_RSS_SYM_TPLZ) {
        static bool logged;

        if (!logged) {
            qemu_log_mask(LOG_UNIMP, "e810: RSS hash function %u not "
                          "modelled, using Toeplitz\n",
                          hfunc >> ICE_AQ_VSI_Q_OPT_RSS_HASH_S);
            logged = true;
        }
    }
    memcpy(key, core->rss.key[slot], sizeof(key));
    net_toeplitz_key_init(&tk, key);
    net_toeplitz_add(&result, input, n, &tk);
    *hash = result;
    return true;
}

/*
 * Pick the queue of a frame (no FCS, 'p' what e810_rx_classify() found in
 * it) received for VSI 'vsi_num' (hardware VSI number, or
 * E810_RSS_VSI_MAIN).  Never fails: without a VSI, a LUT or a matching
 * profile the frame goes to the VSI's first queue (queue 0 if the VSI is
 * unknown) with hashed = false.
 */
static void e810_rss_classify(E810Core *core, uint16_t vsi_num,
                              const uint8_t *frame, size_t len,
                              const E810RxParsed *p, E810RssResult *res)
{
    E810Vsi *v;
    const struct ice_aqc_vsi_props *props;
    uint16_t mflags, base, count, entry;
    uint8_t qopt;
    const uint8_t *lut;
    uint32_t lut_size;
    int slot, prof;

    res->queue = 0;
    res->hash = 0;
    res->hashed = false;

    slot = vsi_num == E810_RSS_VSI_MAIN ? e810_rss_main_slot(core)
                                        : e810_rss_slot(core, vsi_num);
    if (slot < 0) {
        return;
    }
    v = &core->vsi[slot];
    props = e810_vsi_props(v);
    mflags = le16_to_cpu(props->mapping_flags);
    base = le16_to_cpu(props->q_mapping[0]) & ICE_AQ_VSI_Q_M;
    count = le16_to_cpu(props->q_mapping[1]) & ICE_AQ_VSI_Q_M;
    res->queue = base < E810_NUM_QUEUES ? base : 0;

    qopt = props->q_opt_rss;
    switch (qopt & ICE_AQ_VSI_Q_OPT_RSS_LUT_M) {
    case ICE_AQ_VSI_Q_OPT_RSS_LUT_PF:
        lut = core->rss.pf_lut_set ? core->rss.pf_lut : NULL;
        lut_size = E810_RSS_LUT_PF_SIZE;
        break;
    case ICE_AQ_VSI_Q_OPT_RSS_LUT_GBL:
        lut = core->rss.glob_lut[(qopt >> ICE_AQ_VSI_Q_OPT_RSS_GBL_LUT_S) &
                                 0xF];
        lut_size = E810_RSS_LUT_GLOBAL_SIZE;
        break;
    case ICE_AQ_VSI_Q_OPT_RSS_LUT_VSI:
        lut = core->rss.vsi_lut_set[slot] ? core->rss.vsi_lut[slot] : NULL;
        lut_size = E810_RSS_LUT_VSI_SIZE;
        break;
    default:
        lut = NULL;
        lut_size = 0;
        break;
    }
    prof = lut ? e810_rss_profile(core, v->vsi_num, p->ptype) : -1;
    if (prof < 0 ||
        !e810_rss_hash(core, slot, prof, frame, len, p,
                       qopt & ICE_AQ_VSI_Q_OPT_RSS_HASH_M, &res->hash)) {
        core->rss.unhashed++;
        trace_e810_rss_nohash(v->vsi_num, p->ptype, prof);
        return;
    }
    res->hashed = true;
    core->rss.hashed++;
    entry = lut[res->hash & (lut_size - 1)];
    /* LUT entries are queue numbers inside the VSI's queue map */
    if (mflags & ICE_AQ_VSI_Q_MAP_NONCONTIG) {
        base = entry < ARRAY_SIZE(props->q_mapping) ?
               le16_to_cpu(props->q_mapping[entry]) & ICE_AQ_VSI_Q_M : base;
        entry = 0;
    } else if (entry >= count) {
        /* transient while the driver changes the channel count */
        trace_e810_rss_lut_oob(v->vsi_num, entry, count);
        entry = 0;
    }
    if (base + entry < E810_NUM_QUEUES) {
        res->queue = base + entry;
    }
    trace_e810_rss_hash(v->vsi_num, p->ptype, prof, res->hash, res->queue);
}

/* The data path's queue selection: the PF's main VSI (e810_rxq.c) */
bool e810_rss_rx(E810Core *core, const uint8_t *frame, size_t len,
                 const E810RxParsed *p, uint16_t *queue, uint32_t *hash)
{
    return e810_rss_rx_vsi(core, E810_RSS_VSI_MAIN, frame, len, p, queue,
                           hash);
}

/* ... and a given VSI's, for frames the switch forwarded to it */
bool e810_rss_rx_vsi(E810Core *core, uint16_t vsi_num, const uint8_t *frame,
                     size_t len, const E810RxParsed *p, uint16_t *queue,
                     uint32_t *hash)
{
    E810RssResult r;

    e810_rss_classify(core, vsi_num, frame, len, p, &r);
    *queue = r.queue;
    *hash = r.hash;
    return r.hashed;
}

/* ------------------------------------------------------------------ */
/* migration                                                           */

const VMStateDescription e810_vmstate_rss = {
    .name = "e810/rss",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT8_2DARRAY(key, E810Rss, E810_RSS_VSI_SLOTS,
                              E810_RSS_KEY_SIZE),
        VMSTATE_UINT8_ARRAY(key_set, E810Rss, E810_RSS_VSI_SLOTS),
        VMSTATE_UINT8_2DARRAY(vsi_lut, E810Rss, E810_RSS_VSI_SLOTS,
                              E810_RSS_LUT_VSI_SIZE),
        VMSTATE_UINT8_ARRAY(vsi_lut_set, E810Rss, E810_RSS_VSI_SLOTS),
        VMSTATE_UINT8_ARRAY(pf_lut, E810Rss, E810_RSS_LUT_PF_SIZE),
        VMSTATE_UINT8(pf_lut_set, E810Rss),
        VMSTATE_UINT8_2DARRAY(glob_lut, E810Rss, E810_RSS_NUM_GLOBAL_LUT,
                              E810_RSS_LUT_GLOBAL_SIZE),
        VMSTATE_UINT64(hashed, E810Rss),
        VMSTATE_UINT64(unhashed, E810Rss),
        VMSTATE_END_OF_LIST()
    }
};

/* ------------------------------------------------------------------ */
/* QMP e810-query-rss                                                  */

static const char *const e810_hfunc_names[4] = {
    "toeplitz", "symmetric-toeplitz", "xor", "jenkins",
};

/* the RSS profile a packet type selects on a VSI (TCAM walk) */
E810RssInfo *e810_rss_query(E810Core *core, bool has_vsi, uint16_t vsi_num,
                            Error **errp)
{
    int slot = has_vsi ? e810_rss_slot(core, vsi_num)
                       : e810_rss_main_slot(core);
    E810Ddp *d = &core->ddp;
    E810RssInfo *info;
    E810DdpInfo *pkg;
    E810RssProfileList **ptail;
    uint8List **ltail;
    GString *key;
    E810Vsi *v;
    const struct ice_aqc_vsi_props *props;
    uint8_t qopt;
    const uint8_t *lut;
    uint32_t lut_size;
    int prof_of[E810_FLEX_PTYPES];

    if (slot < 0) {
        error_setg(errp, has_vsi ? "the e810 has no VSI %u"
                                 : "the e810 has no VSI yet", vsi_num);
        return NULL;
    }
    v = &core->vsi[slot];
    props = e810_vsi_props(v);
    qopt = props->q_opt_rss;
    info = g_new0(E810RssInfo, 1);
    info->vsi = v->vsi_num;
    info->hash_function = g_strdup(
        e810_hfunc_names[qopt >> ICE_AQ_VSI_Q_OPT_RSS_HASH_S]);
    switch (qopt & ICE_AQ_VSI_Q_OPT_RSS_LUT_M) {
    case ICE_AQ_VSI_Q_OPT_RSS_LUT_PF:
        info->lut_type = g_strdup("pf");
        lut = core->rss.pf_lut;
        lut_size = E810_RSS_LUT_PF_SIZE;
        info->lut_set = core->rss.pf_lut_set;
        break;
    case ICE_AQ_VSI_Q_OPT_RSS_LUT_GBL:
        info->lut_type = g_strdup("global");
        lut = core->rss.glob_lut[(qopt >> ICE_AQ_VSI_Q_OPT_RSS_GBL_LUT_S) &
                                 0xF];
        lut_size = E810_RSS_LUT_GLOBAL_SIZE;
        info->lut_set = true;
        break;
    default:
        info->lut_type = g_strdup("vsi");
        lut = core->rss.vsi_lut[slot];
        lut_size = E810_RSS_LUT_VSI_SIZE;
        info->lut_set = core->rss.vsi_lut_set[slot];
        break;
    }
    key = g_string_new(NULL);
    for (int i = 0; i < E810_RSS_KEY_SIZE; i++) {
        g_string_append_printf(key, "%02x", core->rss.key[slot][i]);
    }
    info->key = g_string_free(key, false);
    info->key_set = core->rss.key_set[slot];
    ltail = &info->lut;
    for (uint32_t i = 0; i < lut_size; i++) {
        QAPI_LIST_APPEND(ltail, lut[i]);
    }
    info->queue_base = le16_to_cpu(props->q_mapping[0]) & ICE_AQ_VSI_Q_M;
    info->queue_count = le16_to_cpu(props->q_mapping[1]) & ICE_AQ_VSI_Q_M;

    /* profiles: which packet types select which field vector */
    for (int pt = 0; pt < E810_FLEX_PTYPES; pt++) {
        prof_of[pt] = e810_rss_profile(core, v->vsi_num, pt);
    }
    ptail = &info->profiles;
    for (int prof = 0; prof < E810_FLEX_PROFS; prof++) {
        const E810FlexTables *t = &core->flex.cur;
        E810RssProfile *rp = NULL;
        uint16List **pttail = NULL;
        E810RssWordList **wtail;
        uint32_t sel = core->glqf_hmask_sel[prof];

        for (int pt = 0; pt < E810_FLEX_PTYPES; pt++) {
            if (prof_of[pt] != prof) {
                continue;
            }
            if (!rp) {
                rp = g_new0(E810RssProfile, 1);
                rp->profile = prof;
                pttail = &rp->ptypes;
            }
            QAPI_LIST_APPEND(pttail, pt);
        }
        if (!rp) {
            continue;
        }
        wtail = &rp->words;
        for (int i = E810_FLEX_FVW - 1; i >= 0; i--) {
            E810RssWord *w;

            if (t->fv_prot[prof][i] == E810_FLEX_PROT_INVAL ||
                t->fv_off[prof][i] == E810_FLEX_OFF_INVAL) {
                continue;
            }
            w = g_new0(E810RssWord, 1);
            w->protocol = t->fv_prot[prof][i];
            w->offset = t->fv_off[prof][i];
            for (int m = 0; m <= GLQF_HMASK_MAX_INDEX; m++) {
                uint32_t hm = core->glqf_hmask[m];

                if ((sel & (1u << m)) && (hm & 0x1F) == (uint32_t)i) {
                    w->has_mask = true;
                    w->mask = hm >> 16;
                }
            }
            QAPI_LIST_APPEND(wtail, w);
        }
        for (int j = 0; j < 6; j++) {
            if (core->flex.glqf_hsymm[j * 128 + prof] & 0x80808080u) {
                rp->symmetric = true;
            }
        }
        QAPI_LIST_APPEND(ptail, rp);
    }
    info->hashed = core->rss.hashed;
    info->unhashed = core->rss.unhashed;

    pkg = g_new0(E810DdpInfo, 1);
    pkg->active = d->active;
    pkg->name = g_strndup((const char *)d->name, sizeof(d->name));
    pkg->version = g_strdup_printf("%u.%u.%u.%u", d->ver[0], d->ver[1],
                                   d->ver[2], d->ver[3]);
    pkg->track_id = d->track_id;
    pkg->buffers = d->bufs_downloaded;
    pkg->updates = d->updates;
    info->package = pkg;
    return info;
}

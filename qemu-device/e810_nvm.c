/*
 * QEMU Intel E810 ("ice") Ethernet controller: NVM and resource ownership
 *
 * At realize a small, self-consistent NVM image is generated:
 *  - a 64 KiB shadow RAM (GLNVM_GENS.SR_SIZE = 6, i.e. 32 Ki words) with
 *    a valid control word, module bank pointers, a PFA without TLVs and
 *    version words;
 *  - a 64 KiB flat flash that holds two banks each of the NVM module (a
 *    CSS header of length 0 followed by the shadow-RAM copy), the Option
 *    ROM (a "$CIV" combo-version block) and the netlist (a link-topology
 *    module with an ID block).  Flat reads at or beyond 64 KiB fail with
 *    EINVAL, which is how ice_discover_flash_size() bisects the size.
 * Reads use 0x0701 (bit 7 of cmd_flags selects flat flash, otherwise the
 * byte offset is into the shadow RAM), bracketed by 0x0008/0x0009 request/
 * release of the NVM resource.  0x0706 verifies (or recalculates) the
 * shadow RAM's software checksum word.  Writes (0x0703 and friends) are
 * not modelled.
 *
 * Word offsets are named as in ice_type.h (ICE_SR_*, ICE_NVM_*,
 * ICE_NETLIST_*).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "e810_core.h"
#include "e810_adminq.h"
#include "e810_ddp.h"
#include "trace.h"

/* shadow RAM words (ice_type.h) */
#define ICE_SR_NVM_CTRL_WORD            0x00
#define ICE_SR_CTRL_WORD_VALID_BITS     (0x1 << 6)  /* bits 7:6 = 01b */
#define ICE_SR_PBA_BLOCK_PTR            0x16
#define ICE_SR_NVM_DEV_STARTER_VER      0x18
#define ICE_SR_NVM_WOL_CFG              0x19
#define ICE_SR_NVM_EETRACK_LO           0x2D
#define ICE_SR_NVM_EETRACK_HI           0x2E
#define ICE_SR_PFA_PTR                  0x40
#define ICE_SR_1ST_NVM_BANK_PTR         0x42
#define ICE_SR_NVM_BANK_SIZE            0x43
#define ICE_SR_1ST_OROM_BANK_PTR        0x44
#define ICE_SR_OROM_BANK_SIZE           0x45
#define ICE_SR_NETLIST_BANK_PTR         0x46
#define ICE_SR_NETLIST_BANK_SIZE        0x47
#define ICE_SR_NVM_PTR_4KB_UNITS        0x8000
/*
 * The software checksum word (0x3F, as in i40e's I40E_SR_SW_CHECKSUM_WORD):
 * the 16-bit sum of every shadow-RAM word, this one included, is
 * ICE_AQC_NVM_CHECKSUM_CORRECT (0xBABA).  The driver never reads it; it
 * asks firmware with 0x0706 (ice_nvm_validate_checksum()).
 */
#define E810_SR_SW_CHECKSUM_WORD        0x3F

/* where the model puts things */
#define E810_SR_PFA_WORD                0x100
#define E810_BANK_SIZE                  0x1000      /* bytes, one 4 KiB unit */
#define E810_NVM_BANK_OFF               0x1000
#define E810_OROM_BANK_OFF              0x3000
#define E810_NETLIST_BANK_OFF           0x5000
/* the shadow-RAM copy in an NVM bank starts at roundup(8 words, 32) */
#define E810_NVM_SR_COPY_OFF            (32 * 2)

/* versions the image reports */
#define E810_NVM_VER_MAJOR              4
#define E810_NVM_VER_MINOR              0x40
#define E810_NVM_EETRACK                0x8001e810
#define E810_OROM_MAJOR                 1
#define E810_OROM_BUILD                 3346
#define E810_OROM_PATCH                 0
#define E810_NETLIST_MAJOR              4
#define E810_NETLIST_MINOR              0x40

static void e810_flash_w16(E810Core *core, uint32_t off, uint16_t v)
{
    stw_le_p(core->nvm_flash + off, v);
}

/* 16-bit sum of the shadow RAM without the checksum word */
static uint16_t e810_nvm_sr_sum(E810Core *core)
{
    uint16_t sum = 0;

    for (uint32_t w = 0; w < E810_NVM_SR_WORDS; w++) {
        if (w != E810_SR_SW_CHECKSUM_WORD) {
            sum += core->nvm_sr[w];
        }
    }
    return sum;
}

static void e810_nvm_build_civd(E810Core *core, uint32_t off)
{
    uint8_t *p = core->nvm_flash + off;
    uint32_t combo = (E810_OROM_MAJOR << 24) | (E810_OROM_BUILD << 8) |
                     E810_OROM_PATCH;
    const char *name = "QEMU E810";
    uint8_t sum = 0;
    size_t len = 4 + 1 + 4 + 1 + 64;    /* struct ice_orom_civd_info */

    memcpy(p, "$CIV", 4);
    stl_le_p(p + 5, combo);
    p[9] = strlen(name);
    for (size_t i = 0; i < strlen(name); i++) {
        stw_le_p(p + 10 + 2 * i, name[i]);
    }
    for (size_t i = 0; i < len; i++) {
        sum += p[i];
    }
    p[4] = -sum;                        /* byte sum of the block is 0 */
}

static void e810_nvm_build_netlist(E810Core *core, uint32_t off)
{
    /* ICE_NETLIST_* word offsets */
    const uint16_t id_blk = 6;          /* ICE_NETLIST_ID_BLK_OFFSET(0) */

    e810_flash_w16(core, off + 2 * 0, 0x011B);     /* LINK_TOPO_MOD_ID */
    e810_flash_w16(core, off + 2 * 1, id_blk + 0x30);
    e810_flash_w16(core, off + 2 * 2, 0x30 + 4);   /* LINK_TOPO_MODULE_LEN */
    e810_flash_w16(core, off + 2 * 3, 0);          /* node count */
    e810_flash_w16(core, off + 2 * (id_blk + 2), E810_NETLIST_MAJOR);
    e810_flash_w16(core, off + 2 * (id_blk + 4), E810_NETLIST_MINOR);
    e810_flash_w16(core, off + 2 * (id_blk + 6), 0);      /* type */
    e810_flash_w16(core, off + 2 * (id_blk + 8), 1);      /* rev */
    e810_flash_w16(core, off + 2 * (id_blk + 0x0A + 14), 0xe810);
    e810_flash_w16(core, off + 2 * (id_blk + 0x0A + 15), 0x0e81);
}

void e810_nvm_realize(E810Core *core)
{
    uint16_t *sr;

    core->nvm_sr = g_new0(uint16_t, E810_NVM_SR_WORDS);
    core->nvm_flash = g_malloc(E810_NVM_FLASH_SIZE);
    memset(core->nvm_flash, 0xFF, E810_NVM_FLASH_SIZE);
    sr = core->nvm_sr;

    /* valid control word, every module in its first bank */
    sr[ICE_SR_NVM_CTRL_WORD] = ICE_SR_CTRL_WORD_VALID_BITS;
    sr[ICE_SR_NVM_DEV_STARTER_VER] = (E810_NVM_VER_MAJOR << 12) |
                                     E810_NVM_VER_MINOR;
    sr[ICE_SR_NVM_WOL_CFG] = 0;
    sr[ICE_SR_NVM_EETRACK_LO] = E810_NVM_EETRACK & 0xFFFF;
    sr[ICE_SR_NVM_EETRACK_HI] = E810_NVM_EETRACK >> 16;
    /* PFA: length word only, no TLVs (link override etc. absent) */
    sr[ICE_SR_PFA_PTR] = E810_SR_PFA_WORD;
    sr[E810_SR_PFA_WORD] = 2;
    sr[ICE_SR_PBA_BLOCK_PTR] = 0;
    sr[ICE_SR_1ST_NVM_BANK_PTR] = ICE_SR_NVM_PTR_4KB_UNITS |
                                  (E810_NVM_BANK_OFF / 4096);
    sr[ICE_SR_NVM_BANK_SIZE] = E810_BANK_SIZE / 4096;
    sr[ICE_SR_1ST_OROM_BANK_PTR] = ICE_SR_NVM_PTR_4KB_UNITS |
                                   (E810_OROM_BANK_OFF / 4096);
    sr[ICE_SR_OROM_BANK_SIZE] = E810_BANK_SIZE / 4096;
    sr[ICE_SR_NETLIST_BANK_PTR] = ICE_SR_NVM_PTR_4KB_UNITS |
                                  (E810_NETLIST_BANK_OFF / 4096);
    sr[ICE_SR_NETLIST_BANK_SIZE] = E810_BANK_SIZE / 4096;
    sr[E810_SR_SW_CHECKSUM_WORD] = ICE_AQC_NVM_CHECKSUM_CORRECT -
                                   e810_nvm_sr_sum(core);

    /* both banks of each module */
    for (int bank = 0; bank < 2; bank++) {
        uint32_t nvm = E810_NVM_BANK_OFF + bank * E810_BANK_SIZE;
        uint32_t n = (E810_BANK_SIZE - E810_NVM_SR_COPY_OFF) / 2;

        /* CSS header: length words (ICE_NVM_CSS_HDR_LEN_L/H) = 0 */
        memset(core->nvm_flash + nvm, 0, E810_NVM_SR_COPY_OFF);
        for (uint32_t w = 0; w < n; w++) {
            e810_flash_w16(core, nvm + E810_NVM_SR_COPY_OFF + 2 * w, sr[w]);
        }
        memset(core->nvm_flash + E810_OROM_BANK_OFF + bank * E810_BANK_SIZE,
               0, E810_BANK_SIZE);
        e810_nvm_build_civd(core, E810_OROM_BANK_OFF +
                            bank * E810_BANK_SIZE + 0x200);
        memset(core->nvm_flash + E810_NETLIST_BANK_OFF +
               bank * E810_BANK_SIZE, 0, E810_BANK_SIZE);
        e810_nvm_build_netlist(core, E810_NETLIST_BANK_OFF +
                               bank * E810_BANK_SIZE);
    }
}

void e810_nvm_unrealize(E810Core *core)
{
    g_free(core->nvm_sr);
    g_free(core->nvm_flash);
    core->nvm_sr = NULL;
    core->nvm_flash = NULL;
}

/* 0x0701 nvm_read */
uint16_t e810_aq_nvm_read(E810Core *core, E810AqCmd *cmd)
{
    const struct ice_aqc_nvm *p = &cmd->params.nvm;
    uint32_t offset = le16_to_cpu(p->offset_low) | (p->offset_high << 16);
    uint16_t module = le16_to_cpu(p->module_typeid);
    uint16_t length = le16_to_cpu(p->length);
    bool flash = p->cmd_flags & ICE_AQC_NVM_FLASH_ONLY;
    uint32_t limit = flash ? E810_NVM_FLASH_SIZE : E810_NVM_SR_WORDS * 2;

    trace_e810_nvm_read(flash, offset, length);
    if (module) {
        qemu_log_mask(LOG_UNIMP, "e810: NVM read of module 0x%x\n", module);
        return ICE_AQ_RC_EINVAL;
    }
    if (!length || !cmd->buf || length > cmd->buf_len) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: NVM read of %u bytes into a %u-byte buffer\n",
                      length, cmd->buf ? cmd->buf_len : 0);
        return ICE_AQ_RC_EINVAL;
    }
    if (offset >= limit || length > limit - offset) {
        /* how firmware reports reads past the end of flash/shadow RAM */
        cmd->resp_len = 0;
        return ICE_AQ_RC_EINVAL;
    }
    if (flash) {
        memcpy(cmd->buf, core->nvm_flash + offset, length);
    } else {
        for (uint32_t i = 0; i < length; i++) {
            uint16_t w = core->nvm_sr[(offset + i) / 2];
            cmd->buf[i] = ((offset + i) & 1) ? w >> 8 : w;
        }
    }
    cmd->resp_len = length;
    return ICE_AQ_RC_OK;
}

/*
 * 0x0706 nvm_checksum (struct ice_aqc_nvm_checksum): VERIFY answers the
 * shadow RAM's sum, ICE_AQC_NVM_CHECKSUM_CORRECT when the image is
 * intact (ice_nvm_validate_checksum(), the ethtool EEPROM self-test);
 * RECALC rewrites the checksum word so that it is.  Exactly one of the
 * two flags: anything else is EINVAL.
 */
uint16_t e810_aq_nvm_checksum(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_nvm_checksum *p = &cmd->params.nvm_checksum;
    uint8_t flags = p->flags;
    uint16_t sum;

    if (flags != ICE_AQC_NVM_CHECKSUM_VERIFY &&
        flags != ICE_AQC_NVM_CHECKSUM_RECALC) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: NVM checksum flags 0x%x: "
                      "want VERIFY (0x1) or RECALC (0x2)\n", flags);
        trace_e810_nvm_checksum(flags, 0);
        return ICE_AQ_RC_EINVAL;
    }
    sum = e810_nvm_sr_sum(core);
    if (flags == ICE_AQC_NVM_CHECKSUM_RECALC) {
        uint16_t w = ICE_AQC_NVM_CHECKSUM_CORRECT - sum;

        core->nvm_sr[E810_SR_SW_CHECKSUM_WORD] = w;
        for (int bank = 0; bank < 2; bank++) {
            e810_flash_w16(core, E810_NVM_BANK_OFF + bank * E810_BANK_SIZE +
                           E810_NVM_SR_COPY_OFF +
                           2 * E810_SR_SW_CHECKSUM_WORD, w);
        }
    }
    sum += core->nvm_sr[E810_SR_SW_CHECKSUM_WORD];
    p->checksum = cpu_to_le16(sum);
    trace_e810_nvm_checksum(flags, sum);
    return ICE_AQ_RC_OK;
}

/*
 * 0x0008 request_resource / 0x0009 release_resource (struct ice_aqc_req_res)
 *
 * There is a single owner (this PF), so requests are always granted; the
 * global-config lock (id 4) answers ICE_AQ_RES_GLBL_SUCCESS in 'status'.
 */
uint16_t e810_aq_req_res(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_req_res *p = &cmd->params.res_owner;
    uint16_t res = le16_to_cpu(p->res_id);
    uint16_t access = le16_to_cpu(p->access_type);
    uint32_t timeout = le32_to_cpu(p->timeout);

    trace_e810_res_request(res, access);
    if (res == 0 || res >= E810_NUM_RES) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: request of resource %u\n", res);
        return ICE_AQ_RC_EINVAL;
    }
    core->res_owned[res] = 1;
    core->res_access[res] = access;
    p->timeout = cpu_to_le32(timeout ? timeout
                                     : ICE_AQ_RES_NVM_READ_DFLT_TIMEOUT_MS);
    if (res == ICE_AQC_RES_ID_GLBL_LOCK) {
        /* SUCCESS (0), or DONE (2): a package is loaded, no work to do */
        uint16_t st = e810_ddp_global_lock_status(core);

        p->status = cpu_to_le16(st);
        if (st) {
            /* not granted: the driver skips the download and release */
            core->res_owned[res] = 0;
            core->res_access[res] = 0;
        }
    }
    return ICE_AQ_RC_OK;
}

uint16_t e810_aq_release_res(E810Core *core, E810AqCmd *cmd)
{
    uint16_t res = le16_to_cpu(cmd->params.res_owner.res_id);

    trace_e810_res_release(res);
    if (res == 0 || res >= E810_NUM_RES) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: release of resource %u\n", res);
        return ICE_AQ_RC_EINVAL;
    }
    /* releasing a resource that is not held is harmless: always succeed */
    core->res_owned[res] = 0;
    core->res_access[res] = 0;
    return ICE_AQ_RC_OK;
}

void e810_res_reset(E810Core *core)
{
    memset(core->res_owned, 0, sizeof(core->res_owned));
    memset(core->res_access, 0, sizeof(core->res_access));
}

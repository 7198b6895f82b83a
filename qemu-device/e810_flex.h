/*
 * QEMU Intel E810 ("ice") Ethernet controller: DDP package, flexible
 * pipeline and RSS state (types only; embedded in E810Core)
 *
 * The sizes are the E810's, as the driver's ice_flex_pipe.c blk_sizes[]
 * and ice_adminq_cmd.h know them.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_NET_E810_FLEX_H
#define HW_NET_E810_FLEX_H

/* ------------------------------------------------------------------ */
/* DDP package (e810_ddp.c)                                            */

#define E810_PKG_NAME_SIZE      28      /* ICE_SEG_NAME_SIZE */
#define E810_PKG_META_INIT_MAX  512     /* bytes of RX parser metadata init */

typedef struct E810Ddp {
    /* the package that is running (set by the LAST 0x0C40 buffer) */
    bool active;
    uint8_t ver[4];
    uint8_t name[E810_PKG_NAME_SIZE];
    uint32_t track_id;
    /* a download in progress (first 0x0C40 .. LAST) */
    bool dl_busy;
    bool dl_meta;
    uint8_t dl_ver[4];
    uint8_t dl_name[E810_PKG_NAME_SIZE];
    uint32_t dl_track_id;
    uint32_t dl_bufs;
    /* statistics, traced and shown by QMP */
    uint32_t bufs_downloaded;
    uint32_t updates;
    /* ICE_SID_RXPARSER_METADATA_INIT as downloaded (0x0C41 answers it) */
    uint16_t meta_init_len;
    uint8_t meta_init[E810_PKG_META_INIT_MAX];
    /* 0x020C: stored, reported by 0x020D */
    uint8_t vlan_mode;
    uint8_t vlan_prio_tagging;
} E810Ddp;

/* ------------------------------------------------------------------ */
/* Flexible pipeline: the RSS block's tables (e810_ddp.c)              */

/* ice_flex_pipe.c blk_sizes[ICE_BLK_RSS] */
#define E810_FLEX_PTYPES        1024    /* XLT1: packet type -> PTG */
#define E810_FLEX_VSIS          768     /* XLT2: VSI -> VSIG */
#define E810_FLEX_TCAM          512     /* profile ID TCAM entries */
#define E810_FLEX_PROFS         128     /* profiles (field vectors) */
#define E810_FLEX_FVW           24      /* field-vector words */
#define E810_FLEX_KEY_SZ        10      /* ICE_TCAM_KEY_SZ: value + invert */
#define E810_FLEX_PROT_INVAL    0xFF    /* ICE_PROT_INVALID */
#define E810_FLEX_OFF_INVAL     0x1FF   /* ICE_FV_OFFSET_INVAL */

typedef struct E810FlexTables {
    uint8_t xlt1[E810_FLEX_PTYPES];
    uint16_t xlt2[E810_FLEX_VSIS];
    uint8_t tcam_key[E810_FLEX_TCAM][E810_FLEX_KEY_SZ];
    uint8_t tcam_prof[E810_FLEX_TCAM];
    uint8_t fv_prot[E810_FLEX_PROFS][E810_FLEX_FVW];
    uint16_t fv_off[E810_FLEX_PROFS][E810_FLEX_FVW];
} E810FlexTables;

/*
 * Firmware-allocated profile IDs and TCAM entries (0x0208/0x0209 types
 * 0x58/0x59 flow director, 0x60/0x61 RSS), one bit per id.  'rsvd' marks
 * the ids the package's default TCAM entries use.
 */
enum {
    E810_POOL_FD_PROF,
    E810_POOL_FD_TCAM,
    E810_POOL_RSS_PROF,
    E810_POOL_RSS_TCAM,
    E810_POOL_NUM
};
#define E810_POOL_MAX_IDS       512
#define E810_FLEX_PROF_REGS     (6 * 128)   /* 6 registers per profile */

/* GLQF_FD_SIZE: the device's flow-director table, GSIZE 14:0 BSIZE 30:16 */
#define E810_FD_GSIZE           512
#define E810_FD_BSIZE           2048
#define E810_FD_FILTERS         16384
#define E810_POOL_BYTES         (E810_POOL_MAX_IDS / 8)

typedef struct E810Flex {
    E810FlexTables cur;         /* what the RSS hash uses */
    E810FlexTables dflt;        /* the package defaults (PF reset) */
    uint8_t pool_used[E810_POOL_NUM][E810_POOL_BYTES];
    uint8_t pool_rsvd[E810_POOL_NUM][E810_POOL_BYTES];
    /* GLQF_HSYMM/FDINSET/FDSWAP(prof, j) at [j * 128 + prof] */
    uint32_t glqf_hsymm[E810_FLEX_PROF_REGS];
    uint32_t glqf_fdinset[E810_FLEX_PROF_REGS];
    uint32_t glqf_fdswap[E810_FLEX_PROF_REGS];
    /* flow-director entries the PF allocated (0x0208 types 0x22/0x23) */
    uint32_t pfqf_fd_size;      /* PFQF_FD_SIZE: GSIZE 14:0, BSIZE 30:16 */
} E810Flex;

/* ------------------------------------------------------------------ */
/* RSS (e810_rss.c)                                                     */

#define E810_RSS_KEY_SIZE       52      /* 40-byte key + 12-byte extension */
#define E810_RSS_LUT_VSI_SIZE   64      /* ICE_LUT_VSI_SIZE */
#define E810_RSS_LUT_GLOBAL_SIZE 512    /* ICE_LUT_GLOBAL_SIZE */
#define E810_RSS_LUT_PF_SIZE    2048    /* ICE_LUT_PF_SIZE */
#define E810_RSS_NUM_GLOBAL_LUT 16      /* ICE_AQC_LUT_GLOBAL_IDX: 4 bits */
#define E810_RSS_VSI_SLOTS      16      /* == E810_NUM_VSI_TRACKED */

typedef struct E810Rss {
    /* per VSI slot (the index of core->vsi[]) */
    uint8_t key[E810_RSS_VSI_SLOTS][E810_RSS_KEY_SIZE];
    uint8_t key_set[E810_RSS_VSI_SLOTS];
    uint8_t vsi_lut[E810_RSS_VSI_SLOTS][E810_RSS_LUT_VSI_SIZE];
    uint8_t vsi_lut_set[E810_RSS_VSI_SLOTS];
    /* the PF's own 2K table and the device's global tables */
    uint8_t pf_lut[E810_RSS_LUT_PF_SIZE];
    uint8_t pf_lut_set;
    uint8_t glob_lut[E810_RSS_NUM_GLOBAL_LUT][E810_RSS_LUT_GLOBAL_SIZE];
    /* counters (QMP read-back) */
    uint64_t hashed;
    uint64_t unhashed;
} E810Rss;

#endif

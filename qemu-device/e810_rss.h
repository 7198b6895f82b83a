/*
 * QEMU Intel E810 ("ice") Ethernet controller: receive-side scaling
 *
 * What the Rx data path calls to pick the queue of an incoming frame.
 * The hash follows what the driver programmed: the packet type of the
 * frame selects a profile through the RSS block's XLT1/XLT2/profile TCAM
 * (downloaded with the DDP package, updated with 0x0C42), the profile's
 * field vector names the header words that are hashed (Toeplitz with the
 * VSI's 0x0B02 key), and the hash indexes the VSI's 0x0B03 lookup table,
 * whose entries are queue numbers inside the VSI's queue map.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_NET_E810_RSS_H
#define HW_NET_E810_RSS_H

#include "e810_core.h"

/* vsi_num argument: "the PF's main LAN VSI" (the one using the PF LUT) */
#define E810_RSS_VSI_MAIN       0xFFFF

/* ice/libie packet types the classifier reports (libie_rx_pt_lut) */
#define E810_PTYPE_MAC_PAY      1
#define E810_PTYPE_IPV4_FRAG    22
#define E810_PTYPE_IPV4_PAY     23
#define E810_PTYPE_IPV4_UDP     24
#define E810_PTYPE_IPV4_TCP     26
#define E810_PTYPE_IPV4_SCTP    27
#define E810_PTYPE_IPV4_ICMP    28
#define E810_PTYPE_IPV6_FRAG    88
#define E810_PTYPE_IPV6_PAY     89
#define E810_PTYPE_IPV6_UDP     90
#define E810_PTYPE_IPV6_TCP     92
#define E810_PTYPE_IPV6_SCTP    93
#define E810_PTYPE_IPV6_ICMP    94

typedef struct E810RssResult {
    uint16_t queue;         /* absolute PF Rx queue (QRX_CTRL index) */
    uint16_t ptype;         /* packet type, for the descriptor's ptype */
    uint32_t hash;          /* valid when 'hashed' */
    bool hashed;            /* a profile matched: set RSS_VALID, rss_hash */
} E810RssResult;

/*
 * Classify 'frame' (no FCS) received for VSI 'vsi_num' (hardware VSI
 * number, or E810_RSS_VSI_MAIN) and pick its queue.  Never fails: without
 * a VSI, a LUT or a matching profile the frame goes to the VSI's first
 * queue (queue 0 if the VSI is unknown) with hashed = false.
 */
void e810_rss_classify(E810Core *core, uint16_t vsi_num,
                       const uint8_t *frame, size_t len, E810RssResult *res);

/* The same, returning the queue; *hash is 0 when the frame was not hashed */
int e810_rss_select_queue(E810Core *core, uint16_t vsi_num,
                          const uint8_t *frame, size_t len, uint32_t *hash);

/* Hardware number of the PF's main LAN VSI, -1 if there is none */
int e810_rss_main_vsi(E810Core *core);

/* QMP e810-query-rss: the VSI's (default: the main VSI's) RSS state */
struct E810RssInfo;
struct E810RssInfo *e810_rss_query(E810Core *core, bool has_vsi,
                                   uint16_t vsi_num, Error **errp);

/* e810_rss.c, internal */
void e810_rss_realize(E810Core *core);
void e810_rss_reset(E810Core *core);
void e810_rss_vsi_added(E810Core *core, int slot);

#endif

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

/*
 * The queue of a frame received from the wire, 'p' what
 * e810_rx_classify() found in it: RSS on the PF's main VSI.  True, with
 * *hash, when a profile hashed the frame; *queue is always a PF queue
 * (the VSI's first, or 0, when the frame is not hashed).
 */
bool e810_rss_rx(E810Core *core, const uint8_t *frame, size_t len,
                 const E810RxParsed *p, uint16_t *queue, uint32_t *hash);

/* The same for VSI vsi_num (a hardware VSI number that exists) */
bool e810_rss_rx_vsi(E810Core *core, uint16_t vsi_num, const uint8_t *frame,
                     size_t len, const E810RxParsed *p, uint16_t *queue,
                     uint32_t *hash);

/* QMP e810-query-rss: the VSI's (default: the main VSI's) RSS state */
struct E810RssInfo;
struct E810RssInfo *e810_rss_query(E810Core *core, bool has_vsi,
                                   uint16_t vsi_num, Error **errp);

/* e810_rss.c: resets, VSIs */
void e810_rss_reset(E810Core *core);
void e810_rss_vsi_added(E810Core *core, int slot);

#endif

/*
 * QEMU Intel E810 ("ice") Ethernet controller: DDP package and the
 * flexible pipeline (admin commands 0x0C40..0x0C43, 0x020C/0x020D and the
 * profile/TCAM resource pools of 0x0208/0x0209)
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_NET_E810_DDP_H
#define HW_NET_E810_DDP_H

#include "e810_core.h"
#include "e810_adminq.h"
#include "migration/vmstate.h"

/* 0x0008 'status' answer for the global config lock (ICE_AQ_RES_GLBL_*) */
uint16_t e810_ddp_global_lock_status(E810Core *core);

/* resets: device/CORER/GLOBR lose the package; a PF reset keeps it */
void e810_ddp_reset(E810Core *core);
void e810_ddp_pf_reset(E810Core *core);

/* 0x0208/0x0209 for the profile/TCAM types; false: not a flex type */
bool e810_flex_res_type(uint16_t type, int *pool);
uint16_t e810_flex_res_alloc(E810Core *core, int pool, bool bottom,
                             uint16_t *id);
uint16_t e810_flex_res_free(E810Core *core, int pool, uint16_t id);

/* 0x0208/0x0209 of flow-director entries (types 0x22/0x23) */
uint16_t e810_flex_fd_entries(E810Core *core, uint16_t type, bool alloc,
                              uint16_t num);

/* migration (the e810/ddp-rss subsection in e810.c) */
extern const VMStateDescription e810_vmstate_ddp_state;
extern const VMStateDescription e810_vmstate_flex;
extern const VMStateDescription e810_vmstate_rss;

/* admin commands */
uint16_t e810_aq_download_pkg(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_upload_section(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_update_pkg(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_get_pkg_info_list(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_set_vlan_mode(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_get_vlan_mode(E810Core *core, E810AqCmd *cmd);

/* e810_rss.c */
uint16_t e810_aq_set_rss_key(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_get_rss_key(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_set_rss_lut(E810Core *core, E810AqCmd *cmd);
uint16_t e810_aq_get_rss_lut(E810Core *core, E810AqCmd *cmd);

#endif

/*
 * QEMU Intel E810 ("ice") Ethernet controller: wire formats
 *
 * Everything the device and the driver exchange through guest memory:
 *  - the admin queue descriptor, the direct parameters of the commands the
 *    model answers and their indirect buffers, named and laid out as the
 *    Linux driver's ice_adminq_cmd.h has them (struct ice_aq_desc,
 *    struct ice_aqc_*, ICE_AQ_*), so a reader can grep both trees;
 *  - the DDP package buffers those commands carry (ice_ddp.h);
 *  - the Rx flex descriptor write-back, its status bits and the packet
 *    types it reports (ice_lan_tx_rx.h).
 *
 * Every multi-byte field is little endian on the wire: read it with
 * le16_to_cpu()/le32_to_cpu()/le64_to_cpu(), write it with cpu_to_le*().
 * The structures are packed and their sizes pinned with
 * QEMU_BUILD_BUG_ON(), as include/block/nvme.h does for NVMe.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_NET_E810_WIRE_H
#define HW_NET_E810_WIRE_H

#include "qemu/bswap.h"

/* ------------------------------------------------------------------ */
/* admin queue descriptor (struct ice_aq_desc)                         */

/* ICE_AQ_FLAG_* */
#define ICE_AQ_FLAG_DD                  0x0001
#define ICE_AQ_FLAG_CMP                 0x0002
#define ICE_AQ_FLAG_ERR                 0x0004
#define ICE_AQ_FLAG_RD                  0x0400
#define ICE_AQ_FLAG_BUF                 0x1000

/* enum ice_aq_err (the codes the model answers itself) */
#define ICE_AQ_RC_OK                    0
#define ICE_AQ_RC_EPERM                 1
#define ICE_AQ_RC_ENOENT                2
#define ICE_AQ_RC_ENOMEM                9
#define ICE_AQ_RC_EINVAL                14
#define ICE_AQ_RC_ENOSPC                16
#define ICE_AQ_RC_ENOSYS                17
#define ICE_AQ_RC_EBADMAN               27
#define ICE_AQ_RC_EBADBUF               28

/* enum ice_adminq_opc: the opcodes the model answers */
enum ice_adminq_opc {
    ice_aqc_opc_get_ver                         = 0x0001,
    ice_aqc_opc_driver_ver                      = 0x0002,
    ice_aqc_opc_q_shutdown                      = 0x0003,
    ice_aqc_opc_req_res                         = 0x0008,
    ice_aqc_opc_release_res                     = 0x0009,
    ice_aqc_opc_list_func_caps                  = 0x000A,
    ice_aqc_opc_list_dev_caps                   = 0x000B,
    ice_aqc_opc_manage_mac_read                 = 0x0107,
    ice_aqc_opc_manage_mac_write                = 0x0108,
    ice_aqc_opc_clear_pxe_mode                  = 0x0110,
    ice_aqc_opc_get_sw_cfg                      = 0x0200,
    ice_aqc_opc_set_port_params                 = 0x0203,
    ice_aqc_opc_alloc_res                       = 0x0208,
    ice_aqc_opc_free_res                        = 0x0209,
    ice_aqc_opc_set_vlan_mode_parameters        = 0x020C,
    ice_aqc_opc_get_vlan_mode_parameters        = 0x020D,
    ice_aqc_opc_add_vsi                         = 0x0210,
    ice_aqc_opc_update_vsi                      = 0x0211,
    ice_aqc_opc_free_vsi                        = 0x0213,
    ice_aqc_opc_add_sw_rules                    = 0x02A0,
    ice_aqc_opc_update_sw_rules                 = 0x02A1,
    ice_aqc_opc_remove_sw_rules                 = 0x02A2,
    ice_aqc_opc_clear_pf_cfg                    = 0x02A4,
    ice_aqc_opc_get_dflt_topo                   = 0x0400,
    ice_aqc_opc_add_sched_elems                 = 0x0401,
    ice_aqc_opc_cfg_sched_elems                 = 0x0403,
    ice_aqc_opc_get_sched_elems                 = 0x0404,
    ice_aqc_opc_move_sched_elems                = 0x0408,
    ice_aqc_opc_suspend_sched_elems             = 0x0409,
    ice_aqc_opc_resume_sched_elems              = 0x040A,
    ice_aqc_opc_query_port_ets                  = 0x040E,
    ice_aqc_opc_delete_sched_elems              = 0x040F,
    ice_aqc_opc_add_rl_profiles                 = 0x0410,
    ice_aqc_opc_query_sched_res                 = 0x0412,
    ice_aqc_opc_remove_rl_profiles              = 0x0415,
    ice_aqc_opc_set_tx_topo                     = 0x0417,
    ice_aqc_opc_get_tx_topo                     = 0x0418,
    ice_aqc_opc_get_phy_caps                    = 0x0600,
    ice_aqc_opc_set_phy_cfg                     = 0x0601,
    ice_aqc_opc_set_mac_cfg                     = 0x0603,
    ice_aqc_opc_restart_an                      = 0x0605,
    ice_aqc_opc_get_link_status                 = 0x0607,
    ice_aqc_opc_set_event_mask                  = 0x0613,
    ice_aqc_opc_set_mac_lb                      = 0x0620,
    ice_aqc_opc_get_link_topo                   = 0x06E0,
    ice_aqc_opc_get_port_options                = 0x06EA,
    ice_aqc_opc_nvm_read                        = 0x0701,
    ice_aqc_opc_nvm_checksum                    = 0x0706,
    ice_aqc_opc_lldp_get_mib                    = 0x0A00,
    ice_aqc_opc_lldp_set_mib_change             = 0x0A01,
    ice_aqc_opc_get_cee_dcb_cfg                 = 0x0A07,
    ice_aqc_opc_lldp_set_local_mib              = 0x0A08,
    ice_aqc_opc_set_rss_key                     = 0x0B02,
    ice_aqc_opc_set_rss_lut                     = 0x0B03,
    ice_aqc_opc_get_rss_key                     = 0x0B04,
    ice_aqc_opc_get_rss_lut                     = 0x0B05,
    ice_aqc_opc_add_txqs                        = 0x0C30,
    ice_aqc_opc_dis_txqs                        = 0x0C31,
    ice_aqc_opc_download_pkg                    = 0x0C40,
    ice_aqc_opc_upload_section                  = 0x0C41,
    ice_aqc_opc_update_pkg                      = 0x0C42,
    ice_aqc_opc_get_pkg_info_list               = 0x0C43,
    ice_aqc_opc_fw_logs_config                  = 0xFF30,
    ice_aqc_opc_fw_logs_register                = 0xFF31,
    ice_aqc_opc_fw_logs_query                   = 0xFF32,
};

/* Generic direct parameters: two words and the buffer address */
struct QEMU_PACKED ice_aqc_generic {
    uint32_t param0;
    uint32_t param1;
    uint32_t addr_high;
    uint32_t addr_low;
};

/* 0x0001 get_ver */
struct QEMU_PACKED ice_aqc_get_ver {
    uint32_t rom_ver;
    uint32_t fw_build;
    uint8_t fw_branch;
    uint8_t fw_major;
    uint8_t fw_minor;
    uint8_t fw_patch;
    uint8_t api_branch;
    uint8_t api_major;
    uint8_t api_minor;
    uint8_t api_patch;
};

/* 0x0002 driver_ver */
struct QEMU_PACKED ice_aqc_driver_ver {
    uint8_t major_ver;
    uint8_t minor_ver;
    uint8_t build_ver;
    uint8_t subbuild_ver;
    uint8_t reserved[4];
    uint32_t addr_high;
    uint32_t addr_low;
};

/* 0x0003 q_shutdown */
struct QEMU_PACKED ice_aqc_q_shutdown {
    uint8_t driver_unloading;
#define ICE_AQC_DRIVER_UNLOADING        0x01
    uint8_t reserved[15];
};

/* 0x0008 req_res / 0x0009 release_res */
struct QEMU_PACKED ice_aqc_req_res {
    uint16_t res_id;
#define ICE_AQC_RES_ID_NVM              1
#define ICE_AQC_RES_ID_CHNG_LOCK        3
#define ICE_AQC_RES_ID_GLBL_LOCK        4
    uint16_t access_type;
#define ICE_AQC_RES_ACCESS_WRITE        2
    uint32_t timeout;
#define ICE_AQ_RES_NVM_READ_DFLT_TIMEOUT_MS 3000
    uint32_t res_number;
    uint16_t status;
#define ICE_AQ_RES_GLBL_SUCCESS         0
#define ICE_AQ_RES_GLBL_DONE            2
    uint8_t reserved[2];
};

/* 0x000A list_func_caps / 0x000B list_dev_caps */
struct QEMU_PACKED ice_aqc_list_caps {
    uint8_t cmd_flags;
    uint8_t pf_index;
    uint8_t reserved[2];
    uint32_t count;
    uint32_t addr_high;
    uint32_t addr_low;
};

/* ... and one of these per capability in the buffer */
struct QEMU_PACKED ice_aqc_list_caps_elem {
    uint16_t cap;
#define ICE_AQC_CAPS_VALID_FUNCTIONS    0x0005
#define ICE_AQC_CAPS_VSI                0x0017
#define ICE_AQC_CAPS_DCB                0x0018
#define ICE_AQC_CAPS_RSS                0x0040
#define ICE_AQC_CAPS_RXQS               0x0041
#define ICE_AQC_CAPS_TXQS               0x0042
#define ICE_AQC_CAPS_MSIX               0x0043
#define ICE_AQC_CAPS_FD                 0x0045
#define ICE_AQC_CAPS_MAX_MTU            0x0047
#define ICE_AQC_CAPS_RDMA               0x0051
#define ICE_AQC_CAPS_TX_SCHED_TOPO_COMP_MODE 0x0085
    uint8_t major_ver;
    uint8_t minor_ver;
    uint32_t number;
    uint32_t logical_id;
    uint32_t phys_id;
    uint64_t rsvd1;
    uint64_t rsvd2;
};

/* 0x0107 manage_mac_read */
struct QEMU_PACKED ice_aqc_manage_mac_read {
    uint16_t flags;
#define ICE_AQC_MAN_MAC_LAN_ADDR_VALID  0x0010
    uint8_t rsvd[2];
    uint8_t num_addr;
    uint8_t rsvd1[3];
    uint32_t addr_high;
    uint32_t addr_low;
};

struct QEMU_PACKED ice_aqc_manage_mac_read_resp {
    uint8_t lport_num;
    uint8_t addr_type;
#define ICE_AQC_MAN_MAC_ADDR_TYPE_LAN   0
    uint8_t mac_addr[6];
};

/* 0x0108 manage_mac_write */
struct QEMU_PACKED ice_aqc_manage_mac_write {
    uint8_t rsvd;
    uint8_t flags;
    uint8_t mac_addr[6];                /* network order */
    uint32_t addr_high;
    uint32_t addr_low;
};

/* 0x0200 get_sw_cfg */
struct QEMU_PACKED ice_aqc_get_sw_cfg {
    uint16_t flags;
    uint16_t element;                   /* response: next element, 0: all */
    uint16_t num_elems;
    uint16_t rsvd;
    uint32_t addr_high;
    uint32_t addr_low;
};

struct QEMU_PACKED ice_aqc_get_sw_cfg_resp_elem {
    uint16_t vsi_port_num;
#define ICE_AQC_GET_SW_CONF_RESP_TYPE_S     14
#define ICE_AQC_GET_SW_CONF_RESP_PHYS_PORT  0
    uint16_t swid;
    uint16_t pf_vf_num;
};

/* 0x0208 alloc_res / 0x0209 free_res: the buffer */
struct QEMU_PACKED ice_aqc_alloc_free_res_elem {
    uint16_t res_type;
#define ICE_AQC_RES_TYPE_M                      0x7F
#define ICE_AQC_RES_TYPE_VSI_LIST_REP           0x03
#define ICE_AQC_RES_TYPE_VSI_LIST_PRUNE         0x04
#define ICE_AQC_RES_TYPE_FDIR_COUNTER_BLOCK     0x21
#define ICE_AQC_RES_TYPE_FDIR_GUARANTEED_ENTRIES 0x22
#define ICE_AQC_RES_TYPE_FDIR_SHARED_ENTRIES    0x23
#define ICE_AQC_RES_TYPE_FD_PROF_BLDR_PROFID    0x58
#define ICE_AQC_RES_TYPE_FD_PROF_BLDR_TCAM      0x59
#define ICE_AQC_RES_TYPE_HASH_PROF_BLDR_PROFID  0x60
#define ICE_AQC_RES_TYPE_HASH_PROF_BLDR_TCAM    0x61
#define ICE_AQC_RES_TYPE_FLAG_SCAN_BOTTOM       0x1000
    uint16_t num_elems;
    uint16_t elem[];                    /* struct ice_aqc_res_elem */
};

/* 0x020C set_vlan_mode_parameters: the buffer */
struct QEMU_PACKED ice_aqc_set_vlan_mode {
    uint8_t reserved;
    uint8_t l2tag_prio_tagging;
#define ICE_AQ_VLAN_PRIO_TAG_M          0x7
#define ICE_AQ_VLAN_PRIO_TAG_INNER_CTAG 0x4
#define ICE_AQ_VLAN_PRIO_TAG_MAX        0x4
    uint8_t l2tag_reserved[64];
    uint8_t rdma_packet;
#define ICE_AQ_DVM_VLAN_RDMA_PKT_FLAG_SETTING 0x1A
    uint8_t rdma_reserved[2];
    uint8_t mng_vlan_prot_id;
    uint8_t prot_id_reserved[30];
};

/* 0x020D get_vlan_mode_parameters: the buffer */
struct QEMU_PACKED ice_aqc_get_vlan_mode {
    uint8_t vlan_mode;
#define ICE_AQ_VLAN_MODE_DVM_ENA        0x01
    uint8_t l2tag_prio_tagging;
    uint8_t reserved[98];
};

/* 0x0210 add_vsi / 0x0211 update_vsi / 0x0213 free_vsi */
struct QEMU_PACKED ice_aqc_add_get_update_free_vsi {
    uint16_t vsi_num;
#define ICE_AQ_VSI_NUM_M                0x03FF
#define ICE_AQ_VSI_IS_VALID             0x8000
    uint16_t cmd_flags;
    uint8_t vf_id;
    uint8_t reserved;
    uint16_t vsi_flags;
#define ICE_AQ_VSI_TYPE_M               0x3
    uint32_t addr_high;
    uint32_t addr_low;
};

struct QEMU_PACKED ice_aqc_add_update_free_vsi_resp {
    uint16_t vsi_num;
    uint16_t ext_status;
    uint16_t vsi_used;
    uint16_t vsi_free;
    uint32_t addr_high;
    uint32_t addr_low;
};

/* The VSI context of 0x0210/0x0211 (the buffer) */
struct QEMU_PACKED ice_aqc_vsi_props {
    uint16_t valid_sections;
#define ICE_AQ_VSI_PROP_SW_VALID        0x0001
#define ICE_AQ_VSI_PROP_SECURITY_VALID  0x0002
#define ICE_AQ_VSI_PROP_VLAN_VALID      0x0004
#define ICE_AQ_VSI_PROP_OUTER_TAG_VALID 0x0008
#define ICE_AQ_VSI_PROP_INGRESS_UP_VALID 0x0010
#define ICE_AQ_VSI_PROP_EGRESS_UP_VALID 0x0020
#define ICE_AQ_VSI_PROP_RXQ_MAP_VALID   0x0040
#define ICE_AQ_VSI_PROP_Q_OPT_VALID     0x0080
#define ICE_AQ_VSI_PROP_OUTER_UP_VALID  0x0100
#define ICE_AQ_VSI_PROP_FLOW_DIR_VALID  0x0800
#define ICE_AQ_VSI_PROP_PASID_VALID     0x1000
    /* switch section */
    uint8_t sw_id;
    uint8_t sw_flags;
    uint8_t sw_flags2;
    uint8_t veb_stat_id;
    /* security section */
    uint8_t sec_flags;
    uint8_t sec_reserved;
    /* VLAN section */
    uint16_t port_based_inner_vlan;
    uint8_t inner_vlan_reserved[2];
    uint8_t inner_vlan_flags;
    uint8_t inner_vlan_reserved2[3];
    /* ingress and egress user priority sections */
    uint32_t ingress_table;
    uint32_t egress_table;
    /* outer tag section */
    uint16_t port_based_outer_vlan;
    uint8_t outer_vlan_flags;
    uint8_t outer_tag_reserved;
    /* queue mapping section */
    uint16_t mapping_flags;
#define ICE_AQ_VSI_Q_MAP_NONCONTIG      0x1
    uint16_t q_mapping[16];
#define ICE_AQ_VSI_Q_M                  0x7FF
    uint16_t tc_mapping[8];
    /* queueing option section */
    uint8_t q_opt_rss;
#define ICE_AQ_VSI_Q_OPT_RSS_LUT_M      0x3
#define ICE_AQ_VSI_Q_OPT_RSS_LUT_VSI    0x0
#define ICE_AQ_VSI_Q_OPT_RSS_LUT_PF     0x2
#define ICE_AQ_VSI_Q_OPT_RSS_LUT_GBL    0x3
#define ICE_AQ_VSI_Q_OPT_RSS_GBL_LUT_S  2
#define ICE_AQ_VSI_Q_OPT_RSS_GBL_LUT_M  (0xF << ICE_AQ_VSI_Q_OPT_RSS_GBL_LUT_S)
#define ICE_AQ_VSI_Q_OPT_RSS_HASH_S     6
#define ICE_AQ_VSI_Q_OPT_RSS_HASH_M     (0x3 << ICE_AQ_VSI_Q_OPT_RSS_HASH_S)
#define ICE_AQ_VSI_Q_OPT_RSS_TPLZ       (0x0 << ICE_AQ_VSI_Q_OPT_RSS_HASH_S)
#define ICE_AQ_VSI_Q_OPT_RSS_SYM_TPLZ   (0x1 << ICE_AQ_VSI_Q_OPT_RSS_HASH_S)
    uint8_t q_opt_tc;
    uint8_t q_opt_flags;
    uint8_t q_opt_reserved[3];
    /* outer user priority section */
    uint32_t outer_up_table;
    uint16_t sect_10_reserved;
    /* flow director section */
    uint16_t fd_options;
    uint16_t max_fd_fltr_dedicated;
    uint16_t max_fd_fltr_shared;
    uint16_t fd_def_q;
    uint16_t fd_report_opt;
    /* PASID section */
    uint32_t pasid_id;
    uint8_t reserved[24];
};

/* 0x02A0..0x02A2 add/update/remove switch rules */
struct QEMU_PACKED ice_aqc_sw_rules {
    uint16_t num_rules_fltr_entry_index;
    uint8_t reserved[6];
    uint32_t addr_high;
    uint32_t addr_low;
};

/* ... the rules of the buffer, each starting with this header */
struct QEMU_PACKED ice_aqc_sw_rules_elem_hdr {
    uint16_t type;
#define ICE_AQC_SW_RULES_T_LKUP_RX          0x0
#define ICE_AQC_SW_RULES_T_LKUP_TX          0x1
#define ICE_AQC_SW_RULES_T_LG_ACT           0x2
#define ICE_AQC_SW_RULES_T_VSI_LIST_SET     0x3
#define ICE_AQC_SW_RULES_T_VSI_LIST_CLEAR   0x4
#define ICE_AQC_SW_RULES_T_PRUNE_LIST_SET   0x5
#define ICE_AQC_SW_RULES_T_PRUNE_LIST_CLEAR 0x6
    uint16_t status;
};

struct QEMU_PACKED ice_sw_rule_lkup_rx_tx {
    struct ice_aqc_sw_rules_elem_hdr hdr;
    uint16_t recipe_id;
    uint16_t src;
    uint32_t act;
#define ICE_SINGLE_ACT_TYPE_M           0x3
#define ICE_SINGLE_ACT_VSI_FORWARDING   0x0
#define ICE_SINGLE_ACT_VSI_ID_S         4
#define ICE_SINGLE_ACT_VSI_ID_M         (0x3FF << ICE_SINGLE_ACT_VSI_ID_S)
#define ICE_SINGLE_ACT_VSI_LIST         (1U << 14)
#define ICE_SINGLE_ACT_VALID_BIT        (1U << 17)
#define ICE_SINGLE_ACT_DROP             (1U << 18)
    uint16_t index;                     /* the device answers it */
    uint16_t hdr_len;
    uint8_t hdr_data[];
};

struct QEMU_PACKED ice_sw_rule_lg_act {
    struct ice_aqc_sw_rules_elem_hdr hdr;
    uint16_t index;
    uint16_t size;
    uint32_t act[];
};

struct QEMU_PACKED ice_sw_rule_vsi_list {
    struct ice_aqc_sw_rules_elem_hdr hdr;
    uint16_t index;
    uint16_t number_vsi;
    uint16_t vsi[];
};

/* 0x0400 get_dflt_topo */
struct QEMU_PACKED ice_aqc_get_topo {
    uint8_t port_num;
    uint8_t num_branches;
    uint16_t reserved1;
    uint32_t reserved2;
    uint32_t addr_high;
    uint32_t addr_low;
};

/* 0x0401, 0x0403, 0x0404, 0x0408, 0x0409, 0x040A, 0x040F */
struct QEMU_PACKED ice_aqc_sched_elem_cmd {
    uint16_t num_elem_req;
    uint16_t num_elem_resp;
    uint32_t reserved;
    uint32_t addr_high;
    uint32_t addr_low;
};

/* A scheduling element's data (kept per node, E810SchedNode.data) */
struct QEMU_PACKED ice_aqc_elem_info_bw {
    uint16_t bw_profile_idx;
    uint16_t bw_alloc;
};

struct QEMU_PACKED ice_aqc_txsched_elem {
    uint8_t elem_type;
#define ICE_AQC_ELEM_TYPE_ROOT_PORT     0x1
#define ICE_AQC_ELEM_TYPE_TC            0x2
#define ICE_AQC_ELEM_TYPE_SE_GENERIC    0x3
#define ICE_AQC_ELEM_TYPE_ENTRY_POINT   0x4
#define ICE_AQC_ELEM_TYPE_LEAF          0x5
    uint8_t valid_sections;
#define ICE_AQC_ELEM_VALID_GENERIC      0x1
#define ICE_AQC_ELEM_VALID_CIR          0x2
#define ICE_AQC_ELEM_VALID_EIR          0x4
    uint8_t generic;
    uint8_t flags;
#define ICE_AQC_ELEM_FLAG_SUSPEND_M     0x1
    struct ice_aqc_elem_info_bw cir_bw;
    struct ice_aqc_elem_info_bw eir_bw;
    uint16_t srl_id;
    uint16_t reserved2;
};

struct QEMU_PACKED ice_aqc_txsched_elem_data {
    uint32_t parent_teid;
    uint32_t node_teid;
    struct ice_aqc_txsched_elem data;
};

struct QEMU_PACKED ice_aqc_txsched_topo_grp_info_hdr {
    uint32_t parent_teid;
    uint16_t num_elems;
    uint16_t reserved2;
};

/* 0x0401 add_sched_elems: groups of these */
struct QEMU_PACKED ice_aqc_add_elem {
    struct ice_aqc_txsched_topo_grp_info_hdr hdr;
    struct ice_aqc_txsched_elem_data generic[];
};

/* 0x0400 get_dflt_topo: one branch per group */
#define ICE_AQC_TOPO_MAX_LEVEL_NUM      9
struct QEMU_PACKED ice_aqc_get_topo_elem {
    struct ice_aqc_txsched_topo_grp_info_hdr hdr;
    struct ice_aqc_txsched_elem_data generic[ICE_AQC_TOPO_MAX_LEVEL_NUM];
};

/* 0x040F delete_sched_elems: groups of these */
struct QEMU_PACKED ice_aqc_delete_elem {
    struct ice_aqc_txsched_topo_grp_info_hdr hdr;
    uint32_t teid[];
};

/* 0x0408 move_sched_elems: groups of these */
struct QEMU_PACKED ice_aqc_txsched_move_grp_info_hdr {
    uint32_t src_parent_teid;
    uint32_t dest_parent_teid;
    uint16_t num_elems;
    uint8_t mode;
    uint8_t reserved;
};

struct QEMU_PACKED ice_aqc_move_elem {
    struct ice_aqc_txsched_move_grp_info_hdr hdr;
    uint32_t teid[];
};

/* 0x0410 add / 0x0415 remove RL profiles */
struct QEMU_PACKED ice_aqc_rl_profile {
    uint16_t num_profiles;
    uint16_t num_processed;
    uint8_t reserved[4];
    uint32_t addr_high;
    uint32_t addr_low;
};

struct QEMU_PACKED ice_aqc_rl_profile_elem {
    uint8_t level;
    uint8_t flags;
    uint16_t profile_id;
    uint16_t max_burst_size;
    uint16_t rl_multiply;
    uint16_t wake_up_calc;
    uint16_t rl_encode;
};

/* 0x0412 query_sched_res: the buffer */
struct QEMU_PACKED ice_aqc_generic_sched_props {
    uint16_t phys_levels;
    uint16_t logical_levels;
    uint8_t flattening_bitmap;
    uint8_t max_device_cgds;
    uint8_t max_pf_cgds;
    uint8_t rsvd0;
    uint16_t rdma_qsets;
    uint8_t rsvd1[22];
};

struct QEMU_PACKED ice_aqc_layer_props {
    uint8_t logical_layer;
    uint8_t chunk_size;
    uint16_t max_device_nodes;
    uint16_t max_pf_nodes;
    uint8_t rsvd0[4];
    uint16_t max_sibl_grp_sz;
    uint16_t max_cir_rl_profiles;
    uint16_t max_eir_rl_profiles;
    uint16_t max_srl_profiles;
    uint8_t rsvd1[14];
};

struct QEMU_PACKED ice_aqc_query_txsched_res_resp {
    struct ice_aqc_generic_sched_props sched_props;
    struct ice_aqc_layer_props layer_props[ICE_AQC_TOPO_MAX_LEVEL_NUM];
};

/* 0x0417 set_tx_topo / 0x0418 get_tx_topo */
struct QEMU_PACKED ice_aqc_get_set_tx_topo {
    uint8_t set_flags;
#define ICE_AQC_TX_TOPO_FLAGS_CORRER    0x01
#define ICE_AQC_TX_TOPO_FLAGS_SRC_RAM   0x02
#define ICE_AQC_TX_TOPO_FLAGS_LOAD_NEW  0x10
#define ICE_AQC_TX_TOPO_FLAGS_ISSUED    0x20
    uint8_t get_flags;
#define ICE_AQC_TX_TOPO_GET_NVM         0
#define ICE_AQC_TX_TOPO_GET_RAM         2
    uint16_t reserved1;
    uint32_t reserved2;
    uint32_t addr_high;
    uint32_t addr_low;
};

/* 0x0600 get_phy_caps */
struct QEMU_PACKED ice_aqc_get_phy_caps {
    uint8_t lport_num;
    uint8_t reserved;
    uint16_t param0;
#define ICE_AQC_REPORT_MODE_M           (7 << 1)
#define ICE_AQC_REPORT_TOPO_CAP_NO_MEDIA 0
#define ICE_AQC_REPORT_TOPO_CAP_MEDIA   (1 << 1)
#define ICE_AQC_REPORT_ACTIVE_CFG       (2 << 1)
#define ICE_AQC_REPORT_DFLT_CFG         (4 << 1)
    uint32_t reserved1;
    uint32_t addr_high;
    uint32_t addr_low;
};

#define ICE_PHY_TYPE_LOW_25GBASE_SR     (1ULL << 23)

struct QEMU_PACKED ice_aqc_get_phy_caps_data {
    uint64_t phy_type_low;
    uint64_t phy_type_high;
    uint8_t caps;
#define ICE_AQC_PHY_EN_TX_LINK_PAUSE    0x01
#define ICE_AQC_PHY_EN_RX_LINK_PAUSE    0x02
#define ICE_AQC_PHY_EN_LINK             0x08
#define ICE_AQC_PHY_EN_AUTO_FEC         0x80
    uint8_t low_power_ctrl_an;
    uint16_t eee_cap;
    uint16_t eeer_value;
    uint8_t phy_id_oui[4];
    uint8_t phy_fw_ver[8];
    uint8_t link_fec_options;
    uint8_t module_compliance_enforcement;
    uint8_t extended_compliance_code;
    uint8_t module_type[3];
    uint8_t qualified_module_count;
    uint8_t rsvd2[7];
    struct QEMU_PACKED {
        uint8_t v_oui[3];
        uint8_t rsvd3;
        uint8_t v_part[16];
        uint32_t v_rev;
        uint64_t rsvd4;
    } qual_modules[16];
};

/* 0x0601 set_phy_cfg: the buffer */
struct QEMU_PACKED ice_aqc_set_phy_cfg_data {
    uint64_t phy_type_low;
    uint64_t phy_type_high;
    uint8_t caps;
#define ICE_AQ_PHY_ENA_VALID_MASK       0xEF
    uint8_t low_power_ctrl_an;
    uint16_t eee_cap;
    uint16_t eeer_value;
    uint8_t link_fec_opt;
    uint8_t module_compliance_enforcement;
};

/* 0x0603 set_mac_cfg */
struct QEMU_PACKED ice_aqc_set_mac_cfg {
    uint16_t max_frame_size;
#define ICE_AQ_SET_MAC_FRAME_SIZE_MAX   9728
    uint8_t params;
    uint8_t tx_tmr_priority;
    uint16_t tx_tmr_value;
    uint16_t fc_refresh_threshold;
    uint8_t drop_opts;
    uint8_t reserved[7];
};

/* 0x0605 restart_an */
struct QEMU_PACKED ice_aqc_restart_an {
    uint8_t lport_num;
    uint8_t reserved;
    uint8_t cmd_flags;
#define ICE_AQC_RESTART_AN_LINK_RESTART 0x02
#define ICE_AQC_RESTART_AN_LINK_ENABLE  0x04
    uint8_t reserved2[13];
};

/* 0x0607 get_link_status, also the link status event */
struct QEMU_PACKED ice_aqc_get_link_status {
    uint8_t lport_num;
    uint8_t reserved;
    uint16_t cmd_flags;
#define ICE_AQ_LSE_M                    0x3
#define ICE_AQ_LSE_DIS                  0x2
#define ICE_AQ_LSE_ENA                  0x3
#define ICE_AQ_LSE_IS_ENABLED           0x1     /* response */
    uint32_t reserved2;
    uint32_t addr_high;
    uint32_t addr_low;
};

#define ICE_GET_LINK_STATUS_DATALEN_V1  32
#define ICE_GET_LINK_STATUS_DATALEN_V2  56

struct QEMU_PACKED ice_aqc_get_link_status_data {
    uint8_t topo_media_conflict;
    uint8_t link_cfg_err;
    uint8_t link_info;
#define ICE_AQ_LINK_UP                  0x01
#define ICE_AQ_MEDIA_AVAILABLE          0x40
#define ICE_AQ_SIGNAL_DETECT            0x80
    uint8_t an_info;
#define ICE_AQ_AN_COMPLETED             0x01
#define ICE_AQ_FEC_EN                   0x08
#define ICE_AQ_LINK_PAUSE_TX            0x20
#define ICE_AQ_LINK_PAUSE_RX            0x40
#define ICE_AQ_QUALIFIED_MODULE         0x80
    uint8_t ext_info;
    uint8_t lb_status;
    uint16_t max_frame_size;
    uint8_t cfg;
#define ICE_AQ_LINK_25G_RS_528_FEC_EN   0x02
    uint8_t power_desc;
    uint16_t link_speed;
#define ICE_AQ_LINK_SPEED_25GB          (1 << 7)
    uint16_t reserved3;
    uint8_t ext_fec_status;
    uint8_t reserved4;
    uint64_t phy_type_low;
    uint64_t phy_type_high;
    /* version 2 */
    uint64_t lp_phy_type_low;
    uint64_t lp_phy_type_high;
    uint8_t lp_fec_adv;
    uint8_t lp_fec_req;
    uint8_t lp_flowcontrol;
    uint8_t reserved[5];
};

/* 0x0613 set_event_mask */
struct QEMU_PACKED ice_aqc_set_event_mask {
    uint8_t lport_num;
    uint8_t reserved[7];
    uint16_t event_mask;
#define ICE_AQ_LINK_EVENT_UPDOWN        (1 << 1)
    uint8_t reserved1[6];
};

/* 0x06EA get_port_options */
struct QEMU_PACKED ice_aqc_get_port_options {
    uint8_t lport_num;
    uint8_t lport_num_valid;
    uint8_t port_options_count;
    uint8_t innermost_phy_index;
    uint8_t port_options;
#define ICE_AQC_PORT_OPT_VALID          0x80
    uint8_t pending_port_option_status;
    uint8_t rsvd[2];
    uint32_t addr_high;
    uint32_t addr_low;
};

struct QEMU_PACKED ice_aqc_get_port_options_elem {
    uint8_t pmd;
    uint8_t max_lane_speed;
#define ICE_AQC_PORT_OPT_MAX_LANE_25G   5
    uint8_t global_scid[2];
    uint8_t phy_scid[2];
    uint8_t pf2port_cid[2];
};

/* 0x0620 set_mac_lb */
struct QEMU_PACKED ice_aqc_set_mac_lb {
    uint8_t lb_mode;
#define ICE_AQ_MAC_LB_EN                0x01
#define ICE_AQ_MAC_LB_OSC_CLK           0x02
    uint8_t reserved[15];
};

/* 0x0701 nvm_read */
struct QEMU_PACKED ice_aqc_nvm {
    uint16_t offset_low;
    uint8_t offset_high;
    uint8_t cmd_flags;
#define ICE_AQC_NVM_FLASH_ONLY          0x80
    uint16_t module_typeid;
    uint16_t length;
    uint32_t addr_high;
    uint32_t addr_low;
};

/* 0x0706 nvm_checksum */
struct QEMU_PACKED ice_aqc_nvm_checksum {
    uint8_t flags;
#define ICE_AQC_NVM_CHECKSUM_VERIFY     0x01
#define ICE_AQC_NVM_CHECKSUM_RECALC     0x02
    uint8_t rsvd;
    uint16_t checksum;                  /* response */
#define ICE_AQC_NVM_CHECKSUM_CORRECT    0xBABA
    uint8_t rsvd2[12];
};

/* 0x0B02 set_rss_key / 0x0B04 get_rss_key */
struct QEMU_PACKED ice_aqc_get_set_rss_key {
    uint16_t vsi_id;
#define ICE_AQC_GSET_RSS_KEY_VSI_VALID  0x8000
#define ICE_AQC_GSET_RSS_KEY_VSI_ID_M   0x03FF
    uint8_t reserved[6];
    uint32_t addr_high;
    uint32_t addr_low;
};

#define ICE_AQC_GET_SET_RSS_KEY_DATA_RSS_KEY_SIZE  40
#define ICE_AQC_GET_SET_RSS_KEY_DATA_HASH_KEY_SIZE 12

/* 0x0B03 set_rss_lut / 0x0B05 get_rss_lut */
struct QEMU_PACKED ice_aqc_get_set_rss_lut {
    uint16_t vsi_id;
#define ICE_AQC_GSET_RSS_LUT_VSI_VALID  0x8000
#define ICE_AQC_GSET_RSS_LUT_VSI_ID_M   0x03FF
    uint16_t flags;
#define ICE_AQC_GSET_RSS_LUT_TABLE_TYPE_M   0x3
#define ICE_LUT_VSI                     0
#define ICE_LUT_PF                      1
#define ICE_LUT_GLOBAL                  2
#define ICE_AQC_GSET_RSS_LUT_TABLE_SIZE_S   2
#define ICE_AQC_GSET_RSS_LUT_TABLE_SIZE_M   (0x3 << 2)
#define ICE_AQC_GSET_RSS_LUT_TABLE_SIZE_512_FLAG 1
#define ICE_AQC_GSET_RSS_LUT_TABLE_SIZE_2K_FLAG  2
#define ICE_AQC_GSET_RSS_LUT_GLOBAL_IDX_S   4
#define ICE_AQC_GSET_RSS_LUT_GLOBAL_IDX_M   (0xF << 4)
    uint32_t reserved;
    uint32_t addr_high;
    uint32_t addr_low;
};

/* 0x0C30 add_txqs */
struct QEMU_PACKED ice_aqc_add_txqs {
    uint8_t num_qgrps;
    uint8_t reserved[3];
    uint32_t reserved1;
    uint32_t addr_high;
    uint32_t addr_low;
};

struct QEMU_PACKED ice_aqc_add_txqs_perq {
    uint16_t txq_id;
    uint8_t rsvd[2];
    uint32_t q_teid;                    /* the device answers it */
    uint8_t txq_ctx[22];                /* TLAN context, ice_tlan_ctx_info */
    uint8_t rsvd2[2];
    struct ice_aqc_txsched_elem info;
};

/* ... groups of these in the buffer */
struct QEMU_PACKED ice_aqc_add_tx_qgrp {
    uint32_t parent_teid;
    uint8_t num_txqs;
    uint8_t rsvd[3];
    struct ice_aqc_add_txqs_perq txqs[];
};

/* 0x0C31 dis_txqs */
struct QEMU_PACKED ice_aqc_dis_txqs {
    uint8_t cmd_type;
    uint8_t num_entries;
    uint16_t vmvf_and_timeout;
    uint32_t blocked_cgds;
    uint32_t addr_high;
    uint32_t addr_low;
};

/* ... groups of these, 2 bytes of padding after an even num_qs */
struct QEMU_PACKED ice_aqc_dis_txq_item {
    uint32_t parent_teid;
    uint8_t num_qs;
    uint8_t rsvd;
    uint16_t q_id[];
#define ICE_AQC_Q_DIS_BUF_ELEM_TYPE_S   15
};

/* 0x0C40 download_pkg / 0x0C41 upload_section / 0x0C42 update_pkg */
struct QEMU_PACKED ice_aqc_download_pkg {
    uint8_t flags;
#define ICE_AQC_DOWNLOAD_PKG_LAST_BUF   0x01
    uint8_t reserved[3];
    uint32_t reserved1;
    uint32_t addr_high;
    uint32_t addr_low;
};

/* ... an error answer, at the start of the buffer */
struct QEMU_PACKED ice_aqc_download_pkg_resp {
    uint32_t error_offset;
    uint32_t error_info;
    uint32_t addr_high;
    uint32_t addr_low;
};

/* 0x0C43 get_pkg_info_list: the buffer */
struct QEMU_PACKED ice_pkg_ver {
    uint8_t major;
    uint8_t minor;
    uint8_t update;
    uint8_t draft;
};

#define ICE_SEG_NAME_SIZE               28

struct QEMU_PACKED ice_aqc_get_pkg_info {
    struct ice_pkg_ver ver;
    char name[ICE_SEG_NAME_SIZE];
    uint32_t track_id;
    uint8_t is_in_nvm;
    uint8_t is_active;
    uint8_t is_active_at_boot;
    uint8_t is_modified;
};

struct QEMU_PACKED ice_aqc_get_pkg_info_resp {
    uint32_t count;
    struct ice_aqc_get_pkg_info pkg_info[];
};

/* 0x040E query_port_ets */
struct QEMU_PACKED ice_aqc_query_port_ets {
    uint32_t port_teid;
    uint32_t reserved;
    uint32_t addr_high;
    uint32_t addr_low;
};

struct QEMU_PACKED ice_aqc_port_ets_elem {
    uint8_t tc_valid_bits;
    uint8_t reserved[3];
    uint32_t up2tc;
    uint8_t tc_bw_share[8];
    uint32_t port_eir_prof_id;
    uint32_t port_cir_prof_id;
    uint32_t tc_node_prio;
    uint8_t reserved1[4];
    uint32_t tc_node_teid[8];
};

/* 0x0A00 lldp_get_mib (and the 0x0A01 MIB change event) */
struct QEMU_PACKED ice_aqc_lldp_get_mib {
    uint8_t type;
#define ICE_AQ_LLDP_MIB_TYPE_M          0x3
#define ICE_AQ_LLDP_MIB_LOCAL           0
#define ICE_AQ_LLDP_MIB_REMOTE          1
#define ICE_AQ_LLDP_MIB_LOCAL_AND_REMOTE 2
#define ICE_AQ_LLDP_BRID_TYPE_S         2
#define ICE_AQ_LLDP_BRID_TYPE_M         (0x3 << ICE_AQ_LLDP_BRID_TYPE_S)
#define ICE_AQ_LLDP_BRID_TYPE_NEAREST_BRID 0
#define ICE_AQ_LLDP_BRID_TYPE_NON_TPMR  1
    uint8_t state;
    uint16_t local_len;
    uint16_t remote_len;
    uint8_t reserved[2];
    uint32_t addr_high;
    uint32_t addr_low;
};

/* 0x0A01 lldp_set_mib_change */
struct QEMU_PACKED ice_aqc_lldp_set_mib_change {
    uint8_t command;
#define ICE_AQ_LLDP_MIB_UPDATE_DIS      0x1
#define ICE_AQ_LLDP_MIB_PENDING_M       0x2
    uint8_t reserved[15];
};

/* 0xFF30 config / 0xFF31 register / 0xFF32 query firmware logging */
enum ice_fwlog_level {
    ICE_FWLOG_LEVEL_NONE = 0,
    ICE_FWLOG_LEVEL_ERROR = 1,
    ICE_FWLOG_LEVEL_WARNING = 2,
    ICE_FWLOG_LEVEL_NORMAL = 3,
    ICE_FWLOG_LEVEL_VERBOSE = 4,
    ICE_FWLOG_LEVEL_INVALID,
};

#define ICE_AQC_FW_LOG_ID_MAX           32  /* enum ice_aqc_fw_logging_mod */

struct QEMU_PACKED ice_aqc_fw_log {
    uint8_t cmd_flags;
#define ICE_AQC_FW_LOG_CONF_UART_EN     0x01
#define ICE_AQC_FW_LOG_CONF_AQ_EN       0x02
#define ICE_AQC_FW_LOG_QUERY_REGISTERED 0x04
#define ICE_AQC_FW_LOG_CONF_SET_VALID   0x08
#define ICE_AQC_FW_LOG_AQ_REGISTER      0x01
#define ICE_AQC_FW_LOG_AQ_QUERY         0x04
    uint8_t rsp_flag;
    uint16_t fw_rt_msb;
    union {
        struct {
            uint32_t fw_rt_lsb;
        } sync;
        struct {
            uint16_t log_resolution;
#define ICE_AQC_FW_LOG_MIN_RESOLUTION   1
#define ICE_AQC_FW_LOG_MAX_RESOLUTION   128
            uint16_t mdl_cnt;
        } cfg;
    } ops;
    uint32_t addr_high;
    uint32_t addr_low;
};

struct QEMU_PACKED ice_aqc_fw_log_cfg_resp {
    uint16_t module_identifier;
    uint8_t log_level;
    uint8_t rsvd0;
};

/* The direct parameters of every command the model answers */
union ice_aq_params {
    uint8_t raw[16];
    struct ice_aqc_generic generic;
    struct ice_aqc_get_ver get_ver;
    struct ice_aqc_driver_ver driver_ver;
    struct ice_aqc_q_shutdown q_shutdown;
    struct ice_aqc_req_res res_owner;
    struct ice_aqc_list_caps get_cap;
    struct ice_aqc_manage_mac_read mac_read;
    struct ice_aqc_manage_mac_write mac_write;
    struct ice_aqc_get_sw_cfg get_sw_conf;
    struct ice_aqc_add_get_update_free_vsi vsi_cmd;
    struct ice_aqc_add_update_free_vsi_resp add_update_free_vsi_res;
    struct ice_aqc_sw_rules sw_rules;
    struct ice_aqc_get_topo get_topo;
    struct ice_aqc_sched_elem_cmd sched_elem_cmd;
    struct ice_aqc_rl_profile rl_profile;
    struct ice_aqc_get_set_tx_topo get_set_tx_topo;
    struct ice_aqc_get_phy_caps get_phy;
    struct ice_aqc_set_mac_cfg set_mac_cfg;
    struct ice_aqc_restart_an restart_an;
    struct ice_aqc_get_link_status get_link_status;
    struct ice_aqc_set_event_mask set_event_mask;
    struct ice_aqc_set_mac_lb set_mac_lb;
    struct ice_aqc_get_port_options get_port_options;
    struct ice_aqc_nvm nvm;
    struct ice_aqc_nvm_checksum nvm_checksum;
    struct ice_aqc_get_set_rss_key get_set_rss_key;
    struct ice_aqc_get_set_rss_lut get_set_rss_lut;
    struct ice_aqc_add_txqs add_txqs;
    struct ice_aqc_dis_txqs dis_txqs;
    struct ice_aqc_download_pkg download_pkg;
    struct ice_aqc_fw_log fw_log;
    struct ice_aqc_query_port_ets port_ets;
    struct ice_aqc_lldp_get_mib lldp_get_mib;
    struct ice_aqc_lldp_set_mib_change lldp_set_event;
} QEMU_PACKED;

struct QEMU_PACKED ice_aq_desc {
    uint16_t flags;
    uint16_t opcode;
    uint16_t datalen;
    uint16_t retval;
    uint32_t cookie_high;
    uint32_t cookie_low;
    union ice_aq_params params;
};

QEMU_BUILD_BUG_ON(sizeof(struct ice_aq_desc) != 32);
QEMU_BUILD_BUG_ON(sizeof(union ice_aq_params) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_generic) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_ver) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_driver_ver) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_q_shutdown) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_req_res) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_list_caps) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_list_caps_elem) != 32);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_manage_mac_read) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_manage_mac_read_resp) != 8);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_manage_mac_write) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_sw_cfg) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_sw_cfg_resp_elem) != 6);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_alloc_free_res_elem) != 4);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_set_vlan_mode) != 100);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_vlan_mode) != 100);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_add_get_update_free_vsi) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_add_update_free_vsi_resp) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_vsi_props) != 128);
QEMU_BUILD_BUG_ON(offsetof(struct ice_aqc_vsi_props, mapping_flags) != 28);
QEMU_BUILD_BUG_ON(offsetof(struct ice_aqc_vsi_props, q_opt_rss) != 78);
QEMU_BUILD_BUG_ON(offsetof(struct ice_aqc_vsi_props, fd_options) != 90);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_sw_rules) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_sw_rule_lkup_rx_tx) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_sw_rule_lg_act) != 8);
QEMU_BUILD_BUG_ON(sizeof(struct ice_sw_rule_vsi_list) != 8);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_topo) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_sched_elem_cmd) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_txsched_elem) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_txsched_elem_data) != 24);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_txsched_topo_grp_info_hdr) != 8);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_topo_elem) != 8 + 9 * 24);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_txsched_move_grp_info_hdr) != 12);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_rl_profile) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_rl_profile_elem) != 12);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_generic_sched_props) != 32);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_layer_props) != 32);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_phy_caps) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_phy_caps_data) != 560);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_set_phy_cfg_data) != 24);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_set_mac_cfg) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_restart_an) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_link_status) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_link_status_data) !=
                  ICE_GET_LINK_STATUS_DATALEN_V2);
QEMU_BUILD_BUG_ON(offsetof(struct ice_aqc_get_link_status_data,
                           lp_phy_type_low) != ICE_GET_LINK_STATUS_DATALEN_V1);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_set_event_mask) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_port_options) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_port_options_elem) != 8);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_nvm) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_nvm_checksum) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_set_tx_topo) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_fw_log) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_query_port_ets) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_port_ets_elem) != 64);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_lldp_get_mib) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_lldp_set_mib_change) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_fw_log_cfg_resp) != 4);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_set_mac_lb) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_set_rss_key) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_set_rss_lut) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_add_txqs) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_add_txqs_perq) != 48);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_add_tx_qgrp) != 8);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_dis_txqs) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_dis_txq_item) != 6);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_download_pkg) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_download_pkg_resp) != 16);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_pkg_info) != 40);
QEMU_BUILD_BUG_ON(sizeof(struct ice_aqc_get_pkg_info_resp) != 4);

/* ------------------------------------------------------------------ */
/* DDP package buffers (ice_ddp.h)                                     */

#define ICE_PKG_BUF_SIZE                4096
#define ICE_MIN_S_COUNT                 1
#define ICE_MAX_S_COUNT                 511
#define ICE_MIN_S_DATA_END              12
#define ICE_MAX_S_DATA_END              4096
#define ICE_METADATA_BUF                0x80000000u

/* section types the model reads (ICE_SID_*) */
#define ICE_SID_METADATA                1
#define ICE_SID_PROFID_TCAM_FD          34
#define ICE_SID_XLT1_RSS                42
#define ICE_SID_XLT2_RSS                43
#define ICE_SID_PROFID_TCAM_RSS         44
#define ICE_SID_FLD_VEC_RSS             46
#define ICE_SID_RXPARSER_METADATA_INIT  58

struct QEMU_PACKED ice_section_entry {
    uint32_t type;
    uint16_t offset;                    /* from the start of the buffer */
    uint16_t size;
};

struct QEMU_PACKED ice_buf_hdr {
    uint16_t section_count;
    uint16_t data_end;
    struct ice_section_entry section_entry[];
};

/* ICE_SID_METADATA */
struct QEMU_PACKED ice_meta_sect {
    struct ice_pkg_ver ver;
    char name[ICE_SEG_NAME_SIZE];
    uint32_t track_id;
};

/* ICE_SID_XLT1_* (u8 values) and ICE_SID_XLT2_* (le16 values) */
struct QEMU_PACKED ice_xlt1_section {
    uint16_t count;
    uint16_t offset;
    uint8_t value[];
};

struct QEMU_PACKED ice_xlt2_section {
    uint16_t count;
    uint16_t offset;
    uint16_t value[];
};

/* ICE_SID_PROFID_TCAM_*: a key of value and invert halves */
#define ICE_TCAM_KEY_SZ                 10

struct QEMU_PACKED ice_prof_tcam_entry {
    uint16_t addr;
    uint8_t key[ICE_TCAM_KEY_SZ];
    uint8_t prof_id;
};

struct QEMU_PACKED ice_prof_id_section {
    uint16_t count;
    struct ice_prof_tcam_entry entry[];
};

/* ICE_SID_FLD_VEC_*: 'count' field vectors of the block's width */
struct QEMU_PACKED ice_fv_word {
    uint8_t prot_id;
    uint16_t off;
    uint8_t resvd;
};

struct QEMU_PACKED ice_sw_fv_section {
    uint16_t count;
    uint16_t base_offset;
    struct ice_fv_word fv[];
};

/* ICE_SID_RXPARSER_METADATA_INIT: 192-bit entries */
#define ICE_META_INIT_ENTRY_SIZE        24

struct QEMU_PACKED ice_meta_init_section {
    uint16_t count;
    uint16_t offset;
    uint8_t entry[];                    /* count * ICE_META_INIT_ENTRY_SIZE */
};

QEMU_BUILD_BUG_ON(sizeof(struct ice_section_entry) != 8);
QEMU_BUILD_BUG_ON(sizeof(struct ice_buf_hdr) != 4);
QEMU_BUILD_BUG_ON(sizeof(struct ice_meta_sect) != 36);
QEMU_BUILD_BUG_ON(sizeof(struct ice_prof_tcam_entry) != 13);
QEMU_BUILD_BUG_ON(sizeof(struct ice_fv_word) != 4);
QEMU_BUILD_BUG_ON(sizeof(struct ice_sw_fv_section) != 4);

/* ------------------------------------------------------------------ */
/* Rx flex descriptor (ice_lan_tx_rx.h)                                */

/* ice_32b_rx_flex_desc_nic: the write-back of RXDID 2 (flex NIC) */
struct QEMU_PACKED ice_32b_rx_flex_desc_nic {
    uint8_t rxdid;
    uint8_t mir_id_umb_cast;
#define ICE_RX_FLEX_DESC_UMB_CAST_S     6
#define ICE_RX_PTYPE_UNICAST            0
#define ICE_RX_PTYPE_MULTICAST          1
#define ICE_RX_PTYPE_BROADCAST          2
    uint16_t ptype_flexi_flags0;
    uint16_t pkt_len;
#define ICE_RX_FLX_DESC_PKT_LEN_M       0x3FFF
    uint16_t hdr_len_sph_flex_flags1;
    uint16_t status_error0;
    uint16_t l2tag1;
    uint32_t rss_hash;
    uint16_t status_error1;
    uint8_t flexi_flags2;
    uint8_t ts_low;
    uint16_t l2tag2_1st;
    uint16_t l2tag2_2nd;
    uint32_t flow_id;
    uint32_t flex_ts;
};

/* the read format: the buffer address in the first quadword */
struct QEMU_PACKED ice_32b_rx_read_desc {
    uint64_t pkt_addr;
    uint64_t hdr_addr;
    uint64_t rsvd1;
    uint64_t rsvd2;
};

QEMU_BUILD_BUG_ON(sizeof(struct ice_32b_rx_flex_desc_nic) != 32);
QEMU_BUILD_BUG_ON(sizeof(struct ice_32b_rx_read_desc) != 32);

/* enum ice_rx_flex_desc_status_error_0_bits */
#define ICE_RX_FLEX_DESC_STATUS0_DD         (1 << 0)
#define ICE_RX_FLEX_DESC_STATUS0_EOF        (1 << 1)
#define ICE_RX_FLEX_DESC_STATUS0_L3L4P      (1 << 3)
#define ICE_RX_FLEX_DESC_STATUS0_XSUM_IPE   (1 << 4)
#define ICE_RX_FLEX_DESC_STATUS0_XSUM_L4E   (1 << 5)
#define ICE_RX_FLEX_DESC_STATUS0_XSUM_EIPE  (1 << 6)
#define ICE_RX_FLEX_DESC_STATUS0_RXE        (1 << 10)
#define ICE_RX_FLEX_DESC_STATUS0_RSS_VALID  (1 << 12)

/* RXDIDs the flex NIC layout is written for (ICE_RXDID_FLEX_NIC*) */
#define ICE_RXDID_FLEX_NIC              2
#define ICE_RXDID_FLEX_NIC_2            6

/*
 * Hardware packet types the classifier reports, as libie_rx_pt_lut[]
 * (libie/rx.c) decodes them: MAC_PAY2, MAC_ARP, then IPv4 and IPv6
 * fragment/payload/UDP/TCP/SCTP/ICMP.
 */
#define ICE_PTYPE_MAC_PAY               1
#define ICE_PTYPE_MAC_ARP               11
#define ICE_PTYPE_IPV4_FRAG             22
#define ICE_PTYPE_IPV4_PAY              23
#define ICE_PTYPE_IPV4_UDP_PAY          24
#define ICE_PTYPE_IPV4_TCP_PAY          26
#define ICE_PTYPE_IPV4_SCTP_PAY         27
#define ICE_PTYPE_IPV4_ICMP_PAY         28
#define ICE_PTYPE_IPV6_FRAG             88
#define ICE_PTYPE_IPV6_PAY              89
#define ICE_PTYPE_IPV6_UDP_PAY          90
#define ICE_PTYPE_IPV6_TCP_PAY          92
#define ICE_PTYPE_IPV6_SCTP_PAY         93
#define ICE_PTYPE_IPV6_ICMP_PAY         94

/* what the parser tells apart that net/eth.h does not name */
#define E810_ETH_P_QINQ_9100            0x9100  /* the old QinQ TPID */
#define E810_IPPROTO_ICMP               1
#define E810_IPPROTO_ICMPV6             58

#endif

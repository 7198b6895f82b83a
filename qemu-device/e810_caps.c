/*
 * QEMU Intel E810 ("ice") Ethernet controller: capabilities
 *
 * 0x000A list_func_caps and 0x000B list_dev_caps answer a list of 32-byte
 * struct ice_aqc_list_caps_elem: what a current E810 function reports, less
 * the features the model does not have (no SR-IOV, 1588 or sensors).  RDMA
 * is listed (nothing is asked of the device until an RDMA driver binds),
 * Tx topology compatibility mode too (the 9-layer topology is the one that
 * runs).  In Safe Mode the driver overwrites most of them
 * (ice_set_safe_mode_caps()); full mode uses them as-is.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "e810_core.h"
#include "e810_adminq.h"
#include "trace.h"

#define E810_RSS_TABLE_SIZE             2048    /* ICE_LUT_PF_SIZE */
#define E810_RSS_ENTRY_WIDTH            6
#define E810_MAX_MTU                    9728

typedef struct E810Cap {
    uint16_t cap;
    uint32_t number;
    uint32_t logical_id;
    uint32_t phys_id;
} E810Cap;

static size_t e810_caps_fill(E810Core *core, E810Cap *caps)
{
    size_t n = 0;
    uint8_t pf = PCI_FUNC(core->owner->devfn);

    caps[n++] = (E810Cap) { ICE_AQC_CAPS_VALID_FUNCTIONS, 1u << pf, 0, 0 };
    caps[n++] = (E810Cap) { ICE_AQC_CAPS_VSI, E810_MAX_VSI, 0, 0 };
    /* DCB: TC0 active (logical_id), 8 TCs at most (phys_id); e810_dcb.c */
    caps[n++] = (E810Cap) { ICE_AQC_CAPS_DCB, 1, 1, 8 };
    caps[n++] = (E810Cap) { ICE_AQC_CAPS_RSS, E810_RSS_TABLE_SIZE,
                            E810_RSS_ENTRY_WIDTH, 0 };
    /* the 'queues' property: LAN queue pairs of this PF, first id 0 */
    caps[n++] = (E810Cap) { ICE_AQC_CAPS_RXQS, core->num_queues, 0, 0 };
    caps[n++] = (E810Cap) { ICE_AQC_CAPS_TXQS, core->num_queues, 0, 0 };
    caps[n++] = (E810Cap) { ICE_AQC_CAPS_MSIX, core->msix_vectors, 0, 0 };
    /*
     * Flow director: the driver sizes its pools from GLQF_FD_SIZE.  Real
     * E810s have it, and ice needs it: without it ice_init_fdir() still
     * creates the control VSI, but pf->ctrl_vsi_idx was never set to
     * ICE_NO_VSI (ice_set_pf_caps()) and ice_vsi_cfg() WARNs.  Filters
     * (FLTR_PROG descriptors) are not applied to received frames.
     */
    caps[n++] = (E810Cap) { ICE_AQC_CAPS_FD, E810_FD_FILTERS, 0, 0 };
    caps[n++] = (E810Cap) { ICE_AQC_CAPS_MAX_MTU, E810_MAX_MTU, 0, 0 };
    /*
     * RDMA (iWARP/RoCEv2): a real E810 reports it; without it the driver
     * warns "RDMA is not supported on this device" at probe.  The RDMA
     * queue-set commands (0x0C33/0x0C34) are only sent by an RDMA driver.
     */
    caps[n++] = (E810Cap) { ICE_AQC_CAPS_RDMA, 1, 0, 0 };
    /*
     * Tx topology compatibility mode (0x0085): current E810 NVMs carry the
     * Tx scheduling layers setting (9 by default), so firmware reports it.
     * The driver asks 0x0418 which topology runs; the default 9-layer one
     * (e810_sched.c) is what it keeps (ice_cfg_tx_topo() -> -EEXIST,
     * quietly).  The stock 6.12 driver then WARNs on rmmod after a core
     * reset in Safe Mode (ice_rebuild() re-reads the capabilities without
     * ice_set_safe_mode_caps(), ice_devlink_unregister_params() drops the
     * tx_scheduling_layers parameter it never registered): a driver bug a
     * real E810 shows too, see qemu-device/README.md.
     */
    caps[n++] = (E810Cap) { ICE_AQC_CAPS_TX_SCHED_TOPO_COMP_MODE, 1, 0, 0 };
    return n;
}

uint16_t e810_aq_list_caps(E810Core *core, E810AqCmd *cmd)
{
    E810Cap caps[16];
    bool dev = cmd->opcode == ice_aqc_opc_list_dev_caps;
    size_t n = e810_caps_fill(core, caps);
    size_t size = n * sizeof(struct ice_aqc_list_caps_elem);
    struct ice_aqc_list_caps_elem *e = (void *)cmd->buf;

    /* count is returned even when the buffer is too small */
    cmd->params.get_cap.count = cpu_to_le32(n);
    if (!cmd->buf || cmd->buf_len < size) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: capability list needs %zu bytes, buffer %u\n",
                      size, cmd->buf ? cmd->buf_len : 0);
        cmd->resp_len = 0;
        return ICE_AQ_RC_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        e[i] = (struct ice_aqc_list_caps_elem) {
            .cap = cpu_to_le16(caps[i].cap),
            .major_ver = 1,
            .minor_ver = 0,
            .number = cpu_to_le32(caps[i].number),
            .logical_id = cpu_to_le32(caps[i].logical_id),
            .phys_id = cpu_to_le32(caps[i].phys_id),
        };
    }
    cmd->resp_len = size;
    trace_e810_caps(dev ? "device" : "function", n);
    return ICE_AQ_RC_OK;
}

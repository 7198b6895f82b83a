/*
 * QEMU Intel E810 ("ice") Ethernet controller: LAN Rx queues
 *
 * The driver programs a queue through QRXFLXP_CNTXT, the eight
 * QRX_CONTEXT dwords and QRX_TAIL (plain storage, e810_regs.c), then
 * enables it with the QRX_CTRL handshake: QENA_REQ (bit 0) is mirrored
 * into QENA_STAT (bit 2), which the driver polls (ice_pf_rxq_wait()).
 * The receive data path is not modelled yet: frames are dropped.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "e810_core.h"
#include "e810_regs.h"
#include "trace.h"

void e810_rxq_ctrl_write(E810Core *core, uint32_t q, uint32_t val)
{
    uint32_t v = val & ~QRX_CTRL_QENA_STAT_M;

    if (val & QRX_CTRL_QENA_REQ_M) {
        v |= QRX_CTRL_QENA_STAT_M;
    }
    if ((v ^ core->qrx_ctrl[q]) & QRX_CTRL_QENA_STAT_M) {
        trace_e810_rxq_enable(q, !!(v & QRX_CTRL_QENA_STAT_M));
    }
    core->qrx_ctrl[q] = v;
}

void e810_rxq_reset(E810Core *core)
{
    memset(core->qrx_ctrl, 0, sizeof(core->qrx_ctrl));
    memset(core->qrx_tail, 0, sizeof(core->qrx_tail));
    memset(core->qrx_context, 0, sizeof(core->qrx_context));
    memset(core->qrxflxp_cntxt, 0, sizeof(core->qrxflxp_cntxt));
}

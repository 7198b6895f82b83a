/*
 * QEMU Intel E810 ("ice") Ethernet controller: core lifecycle
 *
 * Realize, reset and the PF software reset (PFGEN_CTRL.PFSWR) of
 * everything behind BAR0.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "e810_core.h"
#include "e810_adminq.h"
#include "e810_regs.h"
#include "e810_ddp.h"
#include "e810_rss.h"
#include "trace.h"

void e810_core_realize(E810Core *core)
{
    e810_regs_init(core);
    e810_nvm_realize(core);
    e810_intr_realize(core);
    e810_rxq_realize(core);
    e810_txq_realize(core);
    e810_rss_realize(core);
    e810_core_reset(core);
}

void e810_core_unrealize(E810Core *core)
{
    e810_txq_unrealize(core);
    e810_rxq_unrealize(core);
    e810_intr_unrealize(core);
    e810_nvm_unrealize(core);
    e810_regs_cleanup(core);
}

/*
 * PF reset: the driver's view of the PF goes back to what firmware gives
 * after boot -- VSIs, rules, Tx queues and scheduler nodes return to the
 * default tree, queue enables and interrupt routing are cleared and the
 * control queues are disabled.
 */
void e810_core_pf_reset(E810Core *core)
{
    e810_adminq_reset(core);
    e810_intr_reset(core);
    e810_rxq_reset(core);
    e810_txq_reset(core);
    e810_sched_reset(core);
    e810_switch_reset(core);
    e810_res_reset(core);
    e810_link_reset(core);
}

/*
 * CORER/GLOBR requested through GLGEN_RTRIG.  The reset completes at once
 * (GLGEN_RSTAT.DEVSTATE stays 0, GLNVM_ULD keeps its done bits), so what
 * the driver sees is the reset warning: GLGEN_RSTAT.RESET_TYPE and the
 * PFINT_OICR GRST cause on the misc vector, after which it polls
 * ice_check_reset() and rebuilds.  Interrupt routing is kept so the
 * warning can be delivered; the driver reprograms it in the rebuild.
 */
void e810_core_global_reset(E810Core *core, uint32_t type)
{
    trace_e810_global_reset(type);
    e810_adminq_reset(core);
    e810_rxq_reset(core);
    e810_txq_reset(core);
    e810_sched_reset(core);
    e810_switch_reset(core);
    e810_res_reset(core);
    e810_link_reset(core);
    e810_ddp_reset(core);           /* the DDP package is gone */
    core->glgen_rstat = (core->glgen_rstat & ~GLGEN_RSTAT_RESET_TYPE_M) |
                        (type << GLGEN_RSTAT_RESET_TYPE_S);
    e810_intr_oicr_set(core, PFINT_OICR_GRST_M);
}

/* Power-on / bus reset */
void e810_core_reset(E810Core *core)
{
    trace_e810_core_reset();
    e810_regs_reset(core);
    e810_core_pf_reset(core);
    e810_switch_reset_all(core);
    e810_ddp_reset(core);
    memset(core->drv_ver, 0, sizeof(core->drv_ver));
}

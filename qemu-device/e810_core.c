/*
 * QEMU Intel E810 ("ice") Ethernet controller: core lifecycle
 *
 * Realize, reset and the PF software reset (PFGEN_CTRL.PFSWR) of
 * everything behind BAR0, and the core/global/EMP reset sequence with the
 * QEMU_CLOCK_VIRTUAL timer that completes it.
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

/* E810_RESET_DONE_NS after e810_core_global_reset(): reset done */
static void e810_core_reset_done(void *opaque)
{
    E810Core *core = opaque;

    trace_e810_reset_done(core->reset_type);
    core->reset_type = 0;
    core->glgen_rstat &= ~GLGEN_RSTAT_DEVSTATE_M;
    core->glnvm_uld |= E810_GLNVM_ULD_ALL_DONE;
}

void e810_core_realize(E810Core *core)
{
    core->reset_timer = timer_new_ns(QEMU_CLOCK_VIRTUAL,
                                     e810_core_reset_done, core);
    e810_regs_init(core);
    e810_fault_realize(core);
    e810_nvm_realize(core);
    e810_intr_realize(core);
    e810_rxq_realize(core);
    e810_txq_realize(core);
    e810_core_reset(core);
}

void e810_core_unrealize(E810Core *core)
{
    e810_txq_unrealize(core);
    e810_rxq_unrealize(core);
    e810_intr_unrealize(core);
    e810_nvm_unrealize(core);
    e810_fault_unrealize(core);
    e810_regs_cleanup(core);
    timer_free(core->reset_timer);
    core->reset_timer = NULL;
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
    core->lldp_mib_change = false;
}

/*
 * CORER/GLOBR requested through GLGEN_RTRIG, or CORER/GLOBR/EMPR from QMP
 * e810-reset, signalled as hardware does: GLGEN_RSTAT.RESET_TYPE = type
 * with DEVSTATE "in reset", the domain's GLNVM_ULD done bits cleared, the
 * PFINT_OICR GRST cause on the misc vector (ice_misc_intr() reads the type
 * and schedules ice_reset_subtask()), and the domain reset: control
 * queues, LAN queues, VSIs, rules, scheduler, resources, link and the
 * DDP package are gone.  E810_RESET_DONE_NS later (e810_core_reset_done())
 * DEVSTATE reads 0 and the done bits are back, which is what ice_check_reset()
 * polls before ice_rebuild().  Interrupt routing is kept so the warning
 * can be delivered; the driver reprograms it in the rebuild.
 */
void e810_core_global_reset(E810Core *core, uint32_t type)
{
    uint32_t done = GLNVM_ULD_CORER_DONE_M;

    if (type != E810_RESET_CORER) {
        done |= GLNVM_ULD_GLOBR_DONE_M;
    }
    trace_e810_global_reset(type);
    e810_adminq_reset(core);
    e810_rxq_reset(core);
    e810_txq_reset(core);
    e810_sched_reset(core);
    e810_switch_reset(core);
    e810_res_reset(core);
    e810_link_reset(core);
    e810_ddp_reset(core);           /* the DDP package is gone */
    core->glgen_rstat = (core->glgen_rstat & ~(GLGEN_RSTAT_RESET_TYPE_M |
                                               GLGEN_RSTAT_DEVSTATE_M)) |
                        (type << GLGEN_RSTAT_RESET_TYPE_S) |
                        E810_DEVSTATE_IN_RESET;
    core->glnvm_uld &= ~done;
    core->reset_type = type;
    timer_mod(core->reset_timer,
              qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) + E810_RESET_DONE_NS);
    e810_intr_oicr_set(core, PFINT_OICR_GRST_M);
}

/*
 * Power-on / bus reset: out of any reset sequence.  Armed faults and a
 * running link flap stay (they are the test's); a command held on the
 * ATQ goes with the control queues (e810_adminq_reset()).
 */
void e810_core_reset(E810Core *core)
{
    trace_e810_core_reset();
    core->reset_type = 0;
    timer_del(core->reset_timer);
    e810_regs_reset(core);
    e810_core_pf_reset(core);
    e810_switch_reset_all(core);
    e810_ddp_reset(core);
    e810_fwlog_reset(core);
    memset(core->drv_ver, 0, sizeof(core->drv_ver));
}

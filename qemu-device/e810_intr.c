/*
 * QEMU Intel E810 ("ice") Ethernet controller: interrupts
 *
 * Causes (queues, the ARQ, "other" causes in PFINT_OICR) are routed to an
 * MSI-X vector by their *_CTL register (MSIX_INDX 10:0, CAUSE_ENA 30).
 * A vector fires when GLINT_DYN_CTL(v).INTENA is set; on delivery the
 * hardware clears INTENA (auto-mask, unless GLINT_CTL.DIS_AUTOMASK) and
 * the driver re-arms it.  A cause raised while a vector is disabled is
 * latched and delivered on the next arming write.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "hw/pci/msix.h"
#include "e810_core.h"
#include "e810_regs.h"
#include "trace.h"

static void e810_intr_deliver(E810Core *core, uint32_t vector)
{
    core->intr_pending[vector] = 0;
    if (!(core->glint_ctl & GLINT_CTL_DIS_AUTOMASK_M)) {
        core->glint_dyn_ctl[vector] &= ~GLINT_DYN_CTL_INTENA_M;
    }
    trace_e810_intr_fire(vector);
    msix_notify(core->owner, vector);
}

void e810_intr_raise(E810Core *core, uint32_t vector)
{
    if (vector >= core->msix_vectors) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: cause routed to vector %u, PF has %u\n",
                      vector, core->msix_vectors);
        return;
    }
    if (!msix_enabled(core->owner)) {
        trace_e810_intr_drop_msix_off(vector);
        return;
    }
    if (core->glint_dyn_ctl[vector] & GLINT_DYN_CTL_INTENA_M) {
        e810_intr_deliver(core, vector);
    } else {
        trace_e810_intr_latch(vector);
        core->intr_pending[vector] = 1;
    }
}

/* A cause in PFINT_OICR: latched there, delivered via PFINT_OICR_CTL */
void e810_intr_oicr_set(E810Core *core, uint32_t cause)
{
    core->pfint_oicr |= cause;
    trace_e810_intr_oicr(cause, core->pfint_oicr_ena, core->pfint_oicr_ctl);
    if (!(core->pfint_oicr_ena & cause) ||
        !(core->pfint_oicr_ctl & PFINT_OICR_CTL_CAUSE_ENA_M)) {
        return;
    }
    e810_intr_raise(core, core->pfint_oicr_ctl & PFINT_OICR_CTL_MSIX_INDX_M);
}

/* PFINT_OICR is read-to-clear */
uint32_t e810_intr_oicr_read(E810Core *core)
{
    uint32_t v = core->pfint_oicr;

    core->pfint_oicr = 0;
    return v;
}

/* An ARQ event was posted: raise the vector PFINT_FW_CTL names */
void e810_intr_fw_event(E810Core *core)
{
    if (!(core->pfint_fw_ctl & PFINT_FW_CTL_CAUSE_ENA_M)) {
        trace_e810_intr_fw_masked(core->pfint_fw_ctl);
        return;
    }
    e810_intr_raise(core, core->pfint_fw_ctl & PFINT_FW_CTL_MSIX_INDX_M);
}

void e810_intr_dyn_ctl_write(E810Core *core, uint32_t vector, uint32_t val)
{
    uint32_t old = core->glint_dyn_ctl[vector];
    uint32_t keep = GLINT_DYN_CTL_INTENA_M;
    uint32_t newv;

    trace_e810_intr_dyn_ctl(vector, val);
    if (val & GLINT_DYN_CTL_INTENA_MSK_M) {
        /* INTENA_MSK: this write does not change INTENA */
        newv = (val & ~keep) | (old & keep);
    } else {
        newv = val;
    }
    if (val & GLINT_DYN_CTL_CLEARPBA_M) {
        core->intr_pending[vector] = 0;
        msix_clr_pending(core->owner, vector);
    }
    /* CLEARPBA and SWINT_TRIG are actions, they do not read back */
    core->glint_dyn_ctl[vector] = newv & ~(GLINT_DYN_CTL_CLEARPBA_M |
                                           GLINT_DYN_CTL_SWINT_TRIG_M |
                                           GLINT_DYN_CTL_INTENA_MSK_M);

    if (!msix_enabled(core->owner)) {
        return;
    }
    if (val & GLINT_DYN_CTL_SWINT_TRIG_M) {
        e810_intr_deliver(core, vector);
    } else if ((newv & GLINT_DYN_CTL_INTENA_M) &&
               core->intr_pending[vector]) {
        e810_intr_deliver(core, vector);
    }
}

void e810_intr_reset(E810Core *core)
{
    core->glint_ctl = 0;
    core->pfint_oicr = 0;
    core->pfint_oicr_ena = 0;
    core->pfint_oicr_ctl = 0;
    core->pfint_fw_ctl = 0;
    core->pfint_mbx_ctl = 0;
    core->pfint_sb_ctl = 0;
    core->pfint_tsyn_msk = 0;
    memset(core->glint_dyn_ctl, 0, sizeof(core->glint_dyn_ctl));
    memset(core->glint_itr, 0, sizeof(core->glint_itr));
    memset(core->glint_rate, 0, sizeof(core->glint_rate));
    memset(core->glint_vect2func, 0, sizeof(core->glint_vect2func));
    memset(core->intr_pending, 0, sizeof(core->intr_pending));
    memset(core->qint_rqctl, 0, sizeof(core->qint_rqctl));
    memset(core->qint_tqctl, 0, sizeof(core->qint_tqctl));
}

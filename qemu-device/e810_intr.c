/*
 * QEMU Intel E810 ("ice") Ethernet controller: interrupts
 *
 * Causes (queues, the ARQ, "other" causes in PFINT_OICR) are routed to an
 * MSI-X vector by their *_CTL register (MSIX_INDX 10:0, ITR_INDX 12:11,
 * CAUSE_ENA 30).  A vector fires when GLINT_DYN_CTL(v).INTENA is set; on
 * delivery the hardware clears INTENA (auto-mask, unless
 * GLINT_CTL.DIS_AUTOMASK) and the driver re-arms it (0x1B at the end of
 * NAPI, ice_enable_interrupt()).  A cause raised while a vector is
 * disabled stays pending and is delivered on the next arming write: the
 * CLEARPBA bit of that write clears the MSI-X PBA bit only, never a cause
 * (the re-arm write always carries CLEARPBA, so a frame that arrived
 * between NAPI's last poll and the re-arm would otherwise sit in the ring
 * until the next one).
 *
 * Moderation (ITR/INTRL), coarsely: a cause names one of the vector's
 * three ITR registers (GLINT_ITR(idx, v), 2 us units, ICE_ITR_GRAN_US)
 * or none (index 3).  After the vector fires, it is held off for that
 * interval -- and at least the GLINT_RATE interval (4 us units, enable
 * bit 6) -- measured on QEMU_CLOCK_VIRTUAL; a cause that arrives within
 * the window is delivered by a per-vector timer when it closes.  So a
 * busy queue interrupts at most once per ITR interval, never in a storm.
 *
 * GLINT_DYN_CTL writes: INTENA (unless INTENA_MSK), CLEARPBA (MSI-X PBA),
 * SWINT_TRIG (a software cause, moderated by SW_ITR_INDX when
 * SW_ITR_INDX_ENA; on the PFINT_OICR_CTL vector it also sets
 * PFINT_OICR.SWINT), ITR_INDX 0..2 with INTERVAL (updates GLINT_ITR),
 * WB_ON_ITR (kept; descriptors are always written back at once here).
 * Per-vector masking and the PBA while masked are QEMU's MSI-X code.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "qemu/timer.h"
#include "hw/pci/msix.h"
#include "e810_core.h"
#include "e810_regs.h"
#include "trace.h"

/* GLINT_DYN_CTL fields the model acts on (ice_hw_autogen.h) */
#define DYN_CTL_ITR_INDX_S          3
#define DYN_CTL_ITR_INDX_M          (0x3U << DYN_CTL_ITR_INDX_S)
#define DYN_CTL_INTERVAL_S          5
#define DYN_CTL_INTERVAL_M          (0xFFFU << DYN_CTL_INTERVAL_S)
#define DYN_CTL_SW_ITR_INDX_ENA_M   E810_BIT(24)
#define DYN_CTL_SW_ITR_INDX_S       25
#define DYN_CTL_SW_ITR_INDX_M       (0x3U << DYN_CTL_SW_ITR_INDX_S)
#define GLINT_RATE_INTRL_M          0x3FU
#define GLINT_RATE_INTRL_ENA_M      E810_BIT(6)
#define QINT_CTL_ITR_INDX_S         11

#define E810_ITR_GRAN_NS            2000        /* ICE_ITR_GRAN_US */
#define E810_INTRL_GRAN_NS          4000        /* GLINT_RATE: 4 us units */

/* Hold-off window of vector v for causes naming ITR registers itr_mask */
static int64_t e810_intr_holdoff_ns(E810Core *core, uint32_t v,
                                    uint8_t itr_mask)
{
    int64_t ns = 0;
    bool any = false;
    uint32_t rate = core->glint_rate[v];

    for (int i = 0; i < E810_ITR_NONE; i++) {
        if (itr_mask & (1U << i)) {
            int64_t t = (int64_t)core->glint_itr[i][v] * E810_ITR_GRAN_NS;

            ns = any ? MIN(ns, t) : t;
            any = true;
        }
    }
    if (itr_mask & (1U << E810_ITR_NONE)) {
        ns = 0;                 /* a NOITR cause is not moderated */
    }
    if (rate & GLINT_RATE_INTRL_ENA_M) {
        ns = MAX(ns, (int64_t)(rate & GLINT_RATE_INTRL_M) *
                     E810_INTRL_GRAN_NS);
    }
    return ns;
}

/*
 * The one place an MSI-X message leaves the device.  A message lost to an
 * e810-fault-irq drop changes the vector's state as a sent one would
 * (causes consumed, auto-mask, hold-off) but is not sent: no msix_notify(),
 * so neither a write to the guest nor a PBA bit.
 */
static void e810_intr_deliver(E810Core *core, uint32_t vector)
{
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL);
    int64_t hold = e810_intr_holdoff_ns(core, vector,
                                        core->intr_itr_mask[vector]);

    core->intr_pending[vector] = 0;
    core->intr_itr_mask[vector] = 0;
    core->intr_holdoff[vector] = hold ? now + hold : 0;
    if (!(core->glint_ctl & GLINT_CTL_DIS_AUTOMASK_M)) {
        core->glint_dyn_ctl[vector] &= ~GLINT_DYN_CTL_INTENA_M;
    }
    if (e810_fault_irq_drop(core, vector)) {
        trace_e810_intr_fault_drop(vector);
        return;
    }
    core->intr_count++;
    trace_e810_intr_fire(vector);
    msix_notify(core->owner, vector);
}

/*
 * Deliver vector's pending causes if it is armed and outside its hold-off
 * window; inside the window, the timer delivers them when it closes.
 */
static void e810_intr_try(E810Core *core, uint32_t vector)
{
    int64_t now;

    if (!core->intr_pending[vector] ||
        !(core->glint_dyn_ctl[vector] & GLINT_DYN_CTL_INTENA_M)) {
        return;
    }
    if (!msix_enabled(core->owner)) {
        trace_e810_intr_drop_msix_off(vector);
        core->intr_pending[vector] = 0;
        core->intr_itr_mask[vector] = 0;
        return;
    }
    now = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL);
    if (core->intr_holdoff[vector] > now &&
        !(core->intr_itr_mask[vector] & (1U << E810_ITR_NONE))) {
        if (core->itr_timer[vector] &&
            !timer_pending(core->itr_timer[vector])) {
            trace_e810_intr_holdoff(vector,
                                    core->intr_holdoff[vector] - now);
            timer_mod(core->itr_timer[vector], core->intr_holdoff[vector]);
        }
        return;
    }
    e810_intr_deliver(core, vector);
}

static void e810_intr_timer_cb(void *opaque)
{
    E810IntrTimer *t = opaque;

    e810_intr_try(t->core, t->vector);
}

/* A cause for vector, moderated by ITR register itr_idx (3: none) */
static void e810_intr_cause(E810Core *core, uint32_t vector, uint32_t itr_idx)
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
    core->intr_itr_mask[vector] |= 1U << (itr_idx & E810_ITR_NONE);
    if (!core->intr_pending[vector]) {
        core->intr_pending[vector] = 1;
        if (!(core->glint_dyn_ctl[vector] & GLINT_DYN_CTL_INTENA_M)) {
            trace_e810_intr_latch(vector);
        }
    }
    e810_intr_try(core, vector);
}

/* A control cause (ARQ, OICR): not moderated */
static void e810_intr_raise(E810Core *core, uint32_t vector)
{
    e810_intr_cause(core, vector, E810_ITR_NONE);
}

/* A queue cause through its QINT_RQCTL/QINT_TQCTL value */
void e810_intr_queue_cause(E810Core *core, uint32_t ctl, bool tx,
                           uint32_t q)
{
    uint32_t vector = ctl & QINT_RQCTL_MSIX_INDX_M;
    uint32_t itr = (ctl >> QINT_CTL_ITR_INDX_S) & E810_ITR_NONE;

    if (!(ctl & QINT_RQCTL_CAUSE_ENA_M)) {
        trace_e810_intr_queue_masked(tx, q);
        return;
    }
    trace_e810_intr_queue(tx, q, vector, itr);
    e810_intr_cause(core, vector, itr);
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

/*
 * QMP e810-fault-irq spurious: a message on vector with no cause, through
 * the normal delivery path (like an immediate SWINT_TRIG, armed or not).
 */
bool e810_intr_spurious(E810Core *core, uint32_t vector)
{
    if (vector >= core->msix_vectors || !msix_enabled(core->owner)) {
        return false;
    }
    trace_e810_intr_spurious(vector);
    core->intr_itr_mask[vector] |= 1U << E810_ITR_NONE;
    e810_intr_deliver(core, vector);
    return true;
}

void e810_intr_dyn_ctl_write(E810Core *core, uint32_t vector, uint32_t val)
{
    uint32_t old = core->glint_dyn_ctl[vector];
    uint32_t keep = GLINT_DYN_CTL_INTENA_M;
    uint32_t itr_idx = (val & DYN_CTL_ITR_INDX_M) >> DYN_CTL_ITR_INDX_S;
    uint32_t newv;

    trace_e810_intr_dyn_ctl(vector, val);
    if (val & GLINT_DYN_CTL_INTENA_MSK_M) {
        /* INTENA_MSK: this write does not change INTENA */
        newv = (val & ~keep) | (old & keep);
    } else {
        newv = val;
    }
    if (itr_idx != E810_ITR_NONE) {
        /* ITR_INDX 0..2: INTERVAL goes to that GLINT_ITR register */
        core->glint_itr[itr_idx][vector] =
            (val & DYN_CTL_INTERVAL_M) >> DYN_CTL_INTERVAL_S;
    }
    if (val & GLINT_DYN_CTL_CLEARPBA_M) {
        /* the MSI-X pending bit only: causes stay pending (see above) */
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
        uint32_t sw_itr = E810_ITR_NONE;

        if ((core->pfint_oicr_ctl & PFINT_OICR_CTL_CAUSE_ENA_M) &&
            vector == (core->pfint_oicr_ctl & PFINT_OICR_CTL_MSIX_INDX_M)) {
            /*
             * A software interrupt on the "other causes" vector shows in
             * PFINT_OICR.SWINT, whatever PFINT_OICR_ENA says: that is how
             * ice_misc_intr() counts it (pf->sw_int_count, the ethtool
             * interrupt self-test, ice_intr_test()).
             */
            core->pfint_oicr |= PFINT_OICR_SWINT_M;
            trace_e810_intr_oicr(PFINT_OICR_SWINT_M, core->pfint_oicr_ena,
                                 core->pfint_oicr_ctl);
        }
        if (val & DYN_CTL_SW_ITR_INDX_ENA_M) {
            sw_itr = (val & DYN_CTL_SW_ITR_INDX_M) >> DYN_CTL_SW_ITR_INDX_S;
        }
        if (sw_itr == E810_ITR_NONE) {
            /* an immediate software interrupt, armed or not */
            core->intr_itr_mask[vector] |= 1U << E810_ITR_NONE;
            e810_intr_deliver(core, vector);
            return;
        }
        e810_intr_cause(core, vector, sw_itr);
        return;
    }
    e810_intr_try(core, vector);
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
    memset(core->intr_itr_mask, 0, sizeof(core->intr_itr_mask));
    memset(core->intr_holdoff, 0, sizeof(core->intr_holdoff));
    memset(core->qint_rqctl, 0, sizeof(core->qint_rqctl));
    memset(core->qint_tqctl, 0, sizeof(core->qint_tqctl));
    for (uint32_t v = 0; v < core->msix_vectors; v++) {
        if (core->itr_timer[v]) {
            timer_del(core->itr_timer[v]);
        }
    }
}

/* After migration: re-arm the timers of causes waiting for a window */
void e810_intr_post_load(E810Core *core)
{
    for (uint32_t v = 0; v < core->msix_vectors; v++) {
        core->intr_itr_mask[v] &= (1U << (E810_ITR_NONE + 1)) - 1;
        if (core->intr_pending[v] &&
            (core->glint_dyn_ctl[v] & GLINT_DYN_CTL_INTENA_M) &&
            core->itr_timer[v]) {
            timer_mod(core->itr_timer[v],
                      MAX(core->intr_holdoff[v],
                          qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL)));
        }
    }
}

void e810_intr_realize(E810Core *core)
{
    core->itr_timer_ctx = g_new0(E810IntrTimer, core->msix_vectors);
    for (uint32_t v = 0; v < core->msix_vectors; v++) {
        core->itr_timer_ctx[v].core = core;
        core->itr_timer_ctx[v].vector = v;
        core->itr_timer[v] = timer_new_ns(QEMU_CLOCK_VIRTUAL,
                                          e810_intr_timer_cb,
                                          &core->itr_timer_ctx[v]);
    }
}

void e810_intr_unrealize(E810Core *core)
{
    for (uint32_t v = 0; v < core->msix_vectors; v++) {
        if (core->itr_timer[v]) {
            timer_free(core->itr_timer[v]);
            core->itr_timer[v] = NULL;
        }
    }
    g_free(core->itr_timer_ctx);
    core->itr_timer_ctx = NULL;
}

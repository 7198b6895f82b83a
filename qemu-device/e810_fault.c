/*
 * QEMU Intel E810 ("ice") Ethernet controller: device-side fault injection
 *
 * QMP (qapi/e810.json) arms faults; the device's nouns ask this file, at
 * the one place each of them acts, whether a fault applies:
 *
 *  - e810-fault-aq: e810_adminq.c, per ATQ descriptor.  An error answers
 *    the command with that ice_aq_err code (ERR flag, the handler does not
 *    run).  A delay holds the descriptor at the ATQ head on a
 *    QEMU_CLOCK_VIRTUAL timer: PF_FW_ATQH does not move and no later
 *    descriptor is looked at until it completes, as firmware works the
 *    ring in order.  Disabling or resetting the queue (ATQLEN, ATQH, PF or
 *    core reset) drops the held command, so a driver that timed out
 *    (ICE_CTL_Q_SQ_CMD_TIMEOUT, 1 s) and re-initialised its queue finds a
 *    consistent, empty ring.
 *  - e810-fault-arq-drop: e810_arq_post(), an event that would have been
 *    posted is lost instead.
 *  - e810-fault-irq: e810_intr_deliver(), the only place an MSI-X message
 *    is sent.  A dropped message updates the vector's state as if it had
 *    been sent (causes consumed, auto-mask, hold-off) but msix_notify()
 *    is not called, so there is no message and no PBA bit.  "spurious"
 *    sends messages through the same path with no cause.
 *  - e810-reset: corer/globr/empr run the hardware sequence of
 *    e810_core_global_reset() (GLGEN_RSTAT RESET_TYPE + DEVSTATE, GLNVM_ULD
 *    done bits cleared, PFINT_OICR GRST, the domain reset), which
 *    completes after E810_RESET_DONE_NS (e810_core.c).  pfr is signalled
 *    the only way hardware signals a PF-level problem: a critical
 *    PFINT_OICR cause (ECC_ERR), which ice_misc_intr() answers with
 *    ICE_PFR_REQ, i.e. a PF software reset (PFGEN_CTRL.PFSWR) and
 *    ice_rebuild().
 *  - e810-link-flap: e810_link_is_up() is false while the flap lasts; the
 *    link code posts the 0x0607 events; wire frames are dropped.
 *  - e810-fault-rx-desc: e810_rxq.c adds the error bit to status_error0.
 *  - e810-fault-tx-hang: QTX_COMM_DBELL writes are stored but not acted
 *    on; resuming walks the ring up to the last doorbell.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "qemu/timer.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-e810.h"
#include "qapi/qapi-events-e810.h"
#include "hw/qdev-core.h"
#include "hw/pci/pci_device.h"
#include "migration/vmstate.h"
#include "hw/pci/msix.h"
#include "e810_core.h"
#include "e810_regs.h"
#include "e810_wire.h"
#include "trace.h"

/* enum ice_aq_err (firmware's full list; ice_adminq_cmd.h keeps a subset) */
static const char *const e810_aq_err_name[] = {
    "OK", "EPERM", "ENOENT", "ESRCH", "EINTR", "EIO", "ENXIO", "E2BIG",
    "EAGAIN", "ENOMEM", "EACCES", "EFAULT", "EBUSY", "EEXIST", "EINVAL",
    "ENOTTY", "ENOSPC", "ENOSYS", "ERANGE", "EFLUSHED", "BAD_ADDR", "EMODE",
    "EFBIG", "ESBCOMP", "ENOSEC", "EBADSIG", "ESVN", "EBADMAN", "EBADBUF",
};

static const char *e810_reset_name[] = {
    [E810_RESET_CORER] = "corer",
    [E810_RESET_GLOBR] = "globr",
    [E810_RESET_EMPR] = "empr",
};

/* ------------------------------------------------------------------ */
/* helpers                                                             */

static char *e810_fault_aq_err_str(uint16_t error)
{
    uint8_t code = error & 0xFF;        /* the driver strips the FW part */

    if (code < ARRAY_SIZE(e810_aq_err_name)) {
        return g_strdup(e810_aq_err_name[code]);
    }
    return g_strdup_printf("error %u", error);
}

static char *e810_fault_aq_str(uint16_t opcode, uint16_t error,
                               uint32_t delay_ms)
{
    g_autofree char *err = error ? e810_fault_aq_err_str(error) : NULL;
    g_autofree char *delay = delay_ms ?
        g_strdup_printf(" delayed %u ms", delay_ms) : NULL;

    return g_strdup_printf("opcode 0x%04X (%s)%s%s%s", opcode,
                           e810_aq_opcode_name(opcode), delay ? delay : "",
                           err ? " -> " : "", err ? err : "");
}

/* count over QMP (default 1, 0 = until cleared) -> remaining */
static bool e810_fault_count(bool has_count, uint32_t count,
                             int32_t *remaining, Error **errp)
{
    if (!has_count) {
        *remaining = 1;
    } else if (count == 0) {
        *remaining = E810_FAULT_FOREVER;
    } else if (count > INT32_MAX) {
        error_setg(errp, "count must be at most %d (0: until cleared), "
                   "got %u", INT32_MAX, count);
        return false;
    } else {
        *remaining = count;
    }
    return true;
}

/* one use of a fault: true if it was armed */
static bool e810_fault_consume(int32_t *remaining)
{
    if (*remaining == 0) {
        return false;
    }
    if (*remaining > 0) {
        (*remaining)--;
    }
    return true;
}

/* A fault fired: trace it and tell QMP (event E810_FAULT) */
static void e810_fault_fire(E810Core *core, const char *kind,
                            const char *detail, int64_t remaining)
{
    DeviceState *d = DEVICE(core->owner);
    g_autofree char *path = NULL;
    const char *name = d->id;

    if (!name) {
        path = object_get_canonical_path(OBJECT(d));
        name = path;
    }
    trace_e810_fault_fire(kind, detail, remaining);
    qapi_event_send_e810_fault(name, kind, detail, remaining);
}

/* ------------------------------------------------------------------ */
/* admin queue                                                         */

static E810FaultAq *e810_fault_aq_entry(E810Core *core, uint16_t opcode)
{
    for (int i = 0; i < E810_FAULT_MAX_AQ; i++) {
        E810FaultAq *f = &core->fault.aq[i];

        if (f->in_use && f->opcode == opcode) {
            return f;
        }
    }
    return NULL;
}

static int32_t e810_fault_aq_remaining(E810Core *core, uint16_t opcode)
{
    E810FaultAq *f = e810_fault_aq_entry(core, opcode);

    return f ? f->remaining : 0;
}

/*
 * A fresh ATQ descriptor with this opcode: does a fault apply?  Uses up
 * one count of it.
 */
bool e810_fault_aq_match(E810Core *core, uint16_t opcode, uint16_t *error,
                         uint32_t *delay_ms)
{
    E810FaultAq *f = e810_fault_aq_entry(core, opcode);

    if (!f || !e810_fault_consume(&f->remaining)) {
        return false;
    }
    f->fired++;
    *error = f->error;
    *delay_ms = f->delay_ms;
    if (f->remaining == 0) {
        f->in_use = 0;
    }
    return true;
}

/* The descriptor at the ATQ head waits delay_ms before it is executed */
void e810_fault_aq_hold(E810Core *core, uint16_t opcode, uint16_t error,
                        uint32_t delay_ms)
{
    E810Fault *ft = &core->fault;
    g_autofree char *detail = e810_fault_aq_str(opcode, error, delay_ms);

    ft->aq_held = true;
    ft->aq_held_error = error;
    ft->aq_held_opcode = opcode;
    timer_mod(ft->aq_timer, qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) +
              (int64_t)delay_ms * SCALE_MS);
    trace_e810_fault_aq_hold(opcode, delay_ms);
    e810_fault_fire(core, "aq-delay", detail,
                    e810_fault_aq_remaining(core, opcode));
}

void e810_fault_aq_error_fired(E810Core *core, uint16_t opcode,
                               uint16_t error)
{
    g_autofree char *detail = e810_fault_aq_str(opcode, error, 0);

    e810_fault_fire(core, "aq-error", detail,
                    e810_fault_aq_remaining(core, opcode));
}

/* The queue was disabled or reset: a held command is gone with it */
void e810_fault_aq_cancel(E810Core *core)
{
    E810Fault *ft = &core->fault;

    if (ft->aq_held) {
        trace_e810_fault_aq_cancel(ft->aq_held_opcode);
    }
    ft->aq_held = false;
    ft->aq_released = false;
    ft->aq_held_error = 0;
    if (ft->aq_timer) {
        timer_del(ft->aq_timer);
    }
}

/* the delay is over: execute the held descriptor, then the rest */
static void e810_fault_aq_release(E810Core *core)
{
    E810Fault *ft = &core->fault;

    if (!ft->aq_held) {
        return;
    }
    trace_e810_fault_aq_release(ft->aq_held_opcode);
    ft->aq_held = false;
    ft->aq_released = true;
    e810_atq_release(core);
    ft->aq_released = false;
}

static void e810_fault_aq_timer_cb(void *opaque)
{
    e810_fault_aq_release(opaque);
}

bool e810_fault_arq_drop(E810Core *core, uint16_t opcode)
{
    E810Fault *ft = &core->fault;
    g_autofree char *detail = NULL;

    if (!e810_fault_consume(&ft->arq_drop)) {
        return false;
    }
    ft->arq_drop_fired++;
    detail = g_strdup_printf("event 0x%04X (%s)", opcode,
                             e810_aq_opcode_name(opcode));
    e810_fault_fire(core, "arq-drop", detail, ft->arq_drop);
    return true;
}

/* ------------------------------------------------------------------ */
/* interrupts                                                          */

bool e810_fault_irq_drop(E810Core *core, uint32_t vector)
{
    E810Fault *ft = &core->fault;
    g_autofree char *detail = NULL;

    if (vector >= E810_MAX_VECTORS ||
        !e810_fault_consume(&ft->irq_drop[vector])) {
        return false;
    }
    ft->irq_drop_fired[vector]++;
    detail = g_strdup_printf("vector %u", vector);
    e810_fault_fire(core, "irq-drop", detail, ft->irq_drop[vector]);
    return true;
}

/* ------------------------------------------------------------------ */
/* link flap                                                           */

static void e810_fault_link_timer_cb(void *opaque)
{
    E810Core *core = opaque;

    if (!core->fault.link_down) {
        return;
    }
    e810_link_fault_down(core, false);
    e810_fault_fire(core, "link-up", "flap over", 0);
}

/* ------------------------------------------------------------------ */
/* Rx / Tx                                                             */

static uint16_t e810_fault_rx_bits(uint8_t error)
{
    switch (error) {
    case E810_RX_DESC_ERROR_RXE:
    case E810_RX_DESC_ERROR_OVERSIZE:
        /* the flex NIC write-back has no oversize bit: a MAC error */
        return ICE_RX_FLEX_DESC_STATUS0_RXE;
    case E810_RX_DESC_ERROR_IPE:
        return ICE_RX_FLEX_DESC_STATUS0_L3L4P |
               ICE_RX_FLEX_DESC_STATUS0_XSUM_IPE;
    case E810_RX_DESC_ERROR_L4E:
        return ICE_RX_FLEX_DESC_STATUS0_L3L4P |
               ICE_RX_FLEX_DESC_STATUS0_XSUM_L4E;
    case E810_RX_DESC_ERROR_EIPE:
        return ICE_RX_FLEX_DESC_STATUS0_L3L4P |
               ICE_RX_FLEX_DESC_STATUS0_XSUM_EIPE;
    }
    return 0;
}

uint16_t e810_fault_rx_status(E810Core *core, uint32_t q)
{
    for (int i = 0; i < E810_FAULT_MAX_RX; i++) {
        E810FaultRx *f = &core->fault.rx[i];
        g_autofree char *detail = NULL;
        uint16_t bits;

        if (!f->in_use ||
            (f->queue != E810_FAULT_ANY_QUEUE && f->queue != q) ||
            !e810_fault_consume(&f->remaining)) {
            continue;
        }
        f->fired++;
        bits = e810_fault_rx_bits(f->error);
        detail = g_strdup_printf("%s on Rx queue %u",
                                 E810RxDescError_str(f->error), q);
        trace_e810_fault_rx(q, bits);
        if (f->remaining == 0) {
            f->in_use = 0;
        }
        e810_fault_fire(core, "rx-desc-error", detail, f->remaining);
        return bits;
    }
    return 0;
}

bool e810_fault_tx_hung(E810Core *core, uint32_t q)
{
    E810Fault *ft = &core->fault;

    if (!ft->tx_hang_all && !(q < E810_NUM_QUEUES && ft->tx_hang[q])) {
        return false;
    }
    if (q < E810_NUM_QUEUES) {
        ft->tx_held[q]++;
    }
    trace_e810_fault_tx_held(q, core->qtx_comm_dbell[q]);
    return true;
}

/* ------------------------------------------------------------------ */
/* lifecycle                                                           */

void e810_fault_realize(E810Core *core)
{
    E810Fault *ft = &core->fault;

    ft->aq_timer = timer_new_ns(QEMU_CLOCK_VIRTUAL, e810_fault_aq_timer_cb,
                                core);
    ft->link_timer = timer_new_ns(QEMU_CLOCK_VIRTUAL,
                                  e810_fault_link_timer_cb, core);
}

void e810_fault_unrealize(E810Core *core)
{
    E810Fault *ft = &core->fault;

    timer_free(ft->aq_timer);
    timer_free(ft->link_timer);
    ft->aq_timer = ft->link_timer = NULL;
}

/* ------------------------------------------------------------------ */
/* QMP                                                                 */

void qmp_e810_fault_aq(const char *id, uint16_t opcode, bool has_error,
                       uint16_t error, bool has_delay_ms, uint32_t delay_ms,
                       bool has_count, uint32_t count, Error **errp)
{
    E810Core *core = e810_core_find(id, errp);
    E810FaultAq *f;
    int32_t remaining;
    g_autofree char *detail = NULL;

    if (!core) {
        return;
    }
    if (!has_error && !has_delay_ms) {
        error_setg(errp, "e810-fault-aq needs 'error', 'delay-ms' or both");
        return;
    }
    if (has_error && error == 0) {
        error_setg(errp, "error must be a non-zero ice_aq_err code "
                   "(1 EPERM .. 28 EBADBUF); omit it for a delay only");
        return;
    }
    if (has_delay_ms && (delay_ms == 0 || delay_ms > E810_FAULT_MAX_MS)) {
        error_setg(errp, "delay-ms must be in 1..%u, got %u",
                   E810_FAULT_MAX_MS, delay_ms);
        return;
    }
    if (!e810_fault_count(has_count, count, &remaining, errp)) {
        return;
    }
    f = e810_fault_aq_entry(core, opcode);
    for (int i = 0; !f && i < E810_FAULT_MAX_AQ; i++) {
        if (!core->fault.aq[i].in_use) {
            f = &core->fault.aq[i];
        }
    }
    if (!f) {
        error_setg(errp, "at most %d admin-queue faults can be armed at once",
                   E810_FAULT_MAX_AQ);
        return;
    }
    *f = (E810FaultAq) {
        .in_use = 1,
        .opcode = opcode,
        .error = has_error ? error : 0,
        .delay_ms = has_delay_ms ? delay_ms : 0,
        .remaining = remaining,
    };
    detail = e810_fault_aq_str(opcode, f->error, f->delay_ms);
    trace_e810_fault_arm(has_error ? "aq-error" : "aq-delay", detail,
                         remaining);
}

void qmp_e810_fault_arq_drop(const char *id, bool has_count, uint32_t count,
                             Error **errp)
{
    E810Core *core = e810_core_find(id, errp);
    int32_t remaining;

    if (!core || !e810_fault_count(has_count, count, &remaining, errp)) {
        return;
    }
    core->fault.arq_drop = remaining;
    trace_e810_fault_arm("arq-drop", "ARQ events", remaining);
}

void qmp_e810_fault_irq(const char *id, uint16_t vector,
                        E810IrqFaultAction action, bool has_count,
                        uint32_t count, Error **errp)
{
    E810Core *core = e810_core_find(id, errp);
    g_autofree char *detail = NULL;
    int32_t remaining;

    if (!core) {
        return;
    }
    if (vector >= core->msix_vectors) {
        error_setg(errp, "vector %u out of range: the device has %u MSI-X "
                   "vectors (property msix-vectors)", vector,
                   core->msix_vectors);
        return;
    }
    detail = g_strdup_printf("vector %u", vector);
    if (action == E810_IRQ_FAULT_ACTION_DROP) {
        if (!e810_fault_count(has_count, count, &remaining, errp)) {
            return;
        }
        core->fault.irq_drop[vector] = remaining;
        core->fault.irq_drop_fired[vector] = 0;
        trace_e810_fault_arm("irq-drop", detail, remaining);
        return;
    }

    /* spurious: sent now, through the normal delivery path */
    if (!has_count) {
        count = 1;
    }
    if (count == 0 || count > E810_FAULT_MAX_SPURIOUS) {
        error_setg(errp, "count must be in 1..%u for spurious interrupts "
                   "(they are sent at once), got %u",
                   E810_FAULT_MAX_SPURIOUS, count);
        return;
    }
    if (!msix_enabled(core->owner)) {
        error_setg(errp, "MSI-X is not enabled on the device: no interrupt "
                   "can be sent");
        return;
    }
    trace_e810_fault_arm("irq-spurious", detail, count);
    for (uint32_t i = 0; i < count; i++) {
        core->fault.irq_spurious_fired++;
        e810_fault_fire(core, "irq-spurious", detail, count - i - 1);
        e810_intr_spurious(core, vector);
    }
}

void qmp_e810_reset(const char *id, E810ResetType type, Error **errp)
{
    E810Core *core = e810_core_find(id, errp);
    const char *name = E810ResetType_str(type);

    if (!core) {
        return;
    }
    core->fault.resets_fired++;
    trace_e810_fault_arm("reset", name, 0);
    e810_fault_fire(core, "reset", name, 0);
    switch (type) {
    case E810_RESET_TYPE_PFR:
        /* a critical error: ice_misc_intr() requests a PF reset */
        e810_intr_oicr_set(core, PFINT_OICR_ECC_ERR_M);
        break;
    case E810_RESET_TYPE_CORER:
        e810_core_global_reset(core, E810_RESET_CORER);
        break;
    case E810_RESET_TYPE_GLOBR:
        e810_core_global_reset(core, E810_RESET_GLOBR);
        break;
    case E810_RESET_TYPE_EMPR:
        e810_core_global_reset(core, E810_RESET_EMPR);
        break;
    default:
        g_assert_not_reached();
    }
}

void qmp_e810_link_flap(const char *id, bool has_down_ms, uint32_t down_ms,
                        Error **errp)
{
    E810Core *core = e810_core_find(id, errp);
    g_autofree char *detail = NULL;

    if (!core) {
        return;
    }
    if (!has_down_ms) {
        down_ms = 1000;
    }
    if (down_ms == 0 || down_ms > E810_FAULT_MAX_MS) {
        error_setg(errp, "down-ms must be in 1..%u, got %u",
                   E810_FAULT_MAX_MS, down_ms);
        return;
    }
    detail = g_strdup_printf("down for %u ms", down_ms);
    core->fault.link_down_ms = down_ms;
    core->fault.link_flaps++;
    timer_mod(core->fault.link_timer, qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) +
              (int64_t)down_ms * SCALE_MS);
    trace_e810_fault_arm("link-down", detail, 1);
    e810_fault_fire(core, "link-down", detail, 1);
    e810_link_fault_down(core, true);
}

void qmp_e810_fault_rx_desc(const char *id, E810RxDescError error,
                            bool has_queue, uint16_t queue, bool has_count,
                            uint32_t count, Error **errp)
{
    E810Core *core = e810_core_find(id, errp);
    uint16_t q = has_queue ? queue : E810_FAULT_ANY_QUEUE;
    E810FaultRx *f = NULL;
    g_autofree char *detail = NULL;
    int32_t remaining;

    if (!core) {
        return;
    }
    if (has_queue && queue >= core->num_queues) {
        error_setg(errp, "queue %u out of range: the PF has %u Rx queues",
                   queue, core->num_queues);
        return;
    }
    if (!e810_fault_count(has_count, count, &remaining, errp)) {
        return;
    }
    for (int i = 0; i < E810_FAULT_MAX_RX; i++) {
        E810FaultRx *e = &core->fault.rx[i];

        if (e->in_use && e->queue == q) {
            f = e;                      /* re-arming replaces */
            break;
        }
        if (!e->in_use && !f) {
            f = e;
        }
    }
    if (!f) {
        error_setg(errp, "at most %d Rx descriptor faults can be armed at "
                   "once", E810_FAULT_MAX_RX);
        return;
    }
    *f = (E810FaultRx) {
        .in_use = 1,
        .error = error,
        .queue = q,
        .remaining = remaining,
    };
    detail = has_queue ?
        g_strdup_printf("%s on Rx queue %u", E810RxDescError_str(error), q) :
        g_strdup_printf("%s on any Rx queue", E810RxDescError_str(error));
    trace_e810_fault_arm("rx-desc-error", detail, remaining);
}

static void e810_fault_tx_resume(E810Core *core, uint32_t q)
{
    if (core->txq_enabled[q] &&
        core->qtx_comm_dbell[q] != core->qtx_comm_head[q]) {
        e810_txq_kick(core, q);
    }
}

void qmp_e810_fault_tx_hang(const char *id, bool has_queue, uint16_t queue,
                            bool enable, Error **errp)
{
    E810Core *core = e810_core_find(id, errp);
    E810Fault *ft;
    g_autofree char *detail = NULL;

    if (!core) {
        return;
    }
    ft = &core->fault;
    if (has_queue && queue >= core->num_queues) {
        error_setg(errp, "queue %u out of range: the PF has %u Tx queues",
                   queue, core->num_queues);
        return;
    }
    detail = has_queue ? g_strdup_printf("Tx queue %u", queue)
                       : g_strdup("all Tx queues");
    if (enable) {
        if (has_queue) {
            if (!ft->tx_hang[queue]) {
                ft->tx_held[queue] = 0;
            }
            ft->tx_hang[queue] = 1;
        } else {
            if (!ft->tx_hang_all) {
                memset(ft->tx_held, 0, sizeof(ft->tx_held));
            }
            ft->tx_hang_all = true;
        }
        trace_e810_fault_arm("tx-hang", detail, E810_FAULT_FOREVER);
        e810_fault_fire(core, "tx-hang", detail, E810_FAULT_FOREVER);
        return;
    }

    if (has_queue) {
        if (ft->tx_hang_all) {
            error_setg(errp, "all Tx queues are hung: resume them all "
                       "(omit 'queue')");
            return;
        }
        if (!ft->tx_hang[queue]) {
            error_setg(errp, "Tx queue %u is not hung", queue);
            return;
        }
        ft->tx_hang[queue] = 0;
        e810_fault_fire(core, "tx-resume", detail, 0);
        e810_fault_tx_resume(core, queue);
        return;
    }
    {
        bool any = ft->tx_hang_all;

        for (uint32_t q = 0; q < E810_NUM_QUEUES; q++) {
            any |= ft->tx_hang[q];
        }
        if (!any) {
            error_setg(errp, "no Tx queue is hung");
            return;
        }
    }
    ft->tx_hang_all = false;
    memset(ft->tx_hang, 0, sizeof(ft->tx_hang));
    e810_fault_fire(core, "tx-resume", detail, 0);
    for (uint32_t q = 0; q < E810_NUM_QUEUES; q++) {
        e810_fault_tx_resume(core, q);
    }
}

void qmp_e810_fault_clear(const char *id, Error **errp)
{
    E810Core *core = e810_core_find(id, errp);
    E810Fault *ft;
    bool tx_hung;

    if (!core) {
        return;
    }
    ft = &core->fault;
    trace_e810_fault_clear();
    memset(ft->aq, 0, sizeof(ft->aq));
    ft->arq_drop = 0;
    memset(ft->irq_drop, 0, sizeof(ft->irq_drop));
    memset(ft->rx, 0, sizeof(ft->rx));

    tx_hung = ft->tx_hang_all;
    for (uint32_t q = 0; q < E810_NUM_QUEUES; q++) {
        tx_hung |= ft->tx_hang[q];
    }
    ft->tx_hang_all = false;
    memset(ft->tx_hang, 0, sizeof(ft->tx_hang));
    if (tx_hung) {
        e810_fault_fire(core, "tx-resume", "all Tx queues", 0);
        for (uint32_t q = 0; q < E810_NUM_QUEUES; q++) {
            e810_fault_tx_resume(core, q);
        }
    }
    if (ft->link_down) {
        timer_del(ft->link_timer);
        e810_link_fault_down(core, false);
        e810_fault_fire(core, "link-up", "fault cleared", 0);
    }
    /* a held command completes now rather than leave the ATQ stuck */
    if (ft->aq_held) {
        timer_del(ft->aq_timer);
        e810_fault_aq_release(core);
    }
}

static void e810_fault_info_add(E810FaultInfoList ***tail, const char *kind,
                                char *detail, int64_t remaining,
                                uint64_t fired)
{
    E810FaultInfo *info = g_new0(E810FaultInfo, 1);

    info->kind = g_strdup(kind);
    info->detail = detail;              /* takes it */
    info->remaining = remaining;
    info->fired = fired;
    QAPI_LIST_APPEND(*tail, info);
}

E810FaultInfoList *qmp_e810_query_faults(const char *id, Error **errp)
{
    E810Core *core = e810_core_find(id, errp);
    E810FaultInfoList *list = NULL, **tail = &list;
    E810Fault *ft;

    if (!core) {
        return NULL;
    }
    ft = &core->fault;
    for (int i = 0; i < E810_FAULT_MAX_AQ; i++) {
        E810FaultAq *f = &ft->aq[i];

        if (f->in_use) {
            e810_fault_info_add(&tail, f->error ? "aq-error" : "aq-delay",
                                e810_fault_aq_str(f->opcode, f->error,
                                                  f->delay_ms),
                                f->remaining, f->fired);
        }
    }
    if (ft->aq_held) {
        e810_fault_info_add(&tail, "aq-delay",
                            g_strdup_printf("opcode 0x%04X (%s) held at the "
                                            "ATQ head",
                                            ft->aq_held_opcode,
                                            e810_aq_opcode_name(
                                                ft->aq_held_opcode)),
                            0, 1);
    }
    if (ft->arq_drop) {
        e810_fault_info_add(&tail, "arq-drop", g_strdup("ARQ events"),
                            ft->arq_drop, ft->arq_drop_fired);
    }
    for (uint32_t v = 0; v < E810_MAX_VECTORS; v++) {
        if (ft->irq_drop[v]) {
            e810_fault_info_add(&tail, "irq-drop",
                                g_strdup_printf("vector %u", v),
                                ft->irq_drop[v], ft->irq_drop_fired[v]);
        }
    }
    if (core->reset_type && core->reset_type < ARRAY_SIZE(e810_reset_name)) {
        e810_fault_info_add(&tail, "reset",
                            g_strdup_printf("%s in progress",
                                            e810_reset_name[core->reset_type]),
                            0, ft->resets_fired);
    }
    if (ft->link_down) {
        e810_fault_info_add(&tail, "link-down",
                            g_strdup_printf("down for %u ms",
                                            ft->link_down_ms),
                            1, ft->link_flaps);
    }
    for (int i = 0; i < E810_FAULT_MAX_RX; i++) {
        E810FaultRx *f = &ft->rx[i];

        if (!f->in_use) {
            continue;
        }
        e810_fault_info_add(&tail, "rx-desc-error",
                            f->queue == E810_FAULT_ANY_QUEUE ?
                            g_strdup_printf("%s on any Rx queue",
                                            E810RxDescError_str(f->error)) :
                            g_strdup_printf("%s on Rx queue %u",
                                            E810RxDescError_str(f->error),
                                            f->queue),
                            f->remaining, f->fired);
    }
    if (ft->tx_hang_all) {
        uint64_t held = 0;

        for (uint32_t q = 0; q < E810_NUM_QUEUES; q++) {
            held += ft->tx_held[q];
        }
        e810_fault_info_add(&tail, "tx-hang", g_strdup("all Tx queues"),
                            E810_FAULT_FOREVER, held);
    }
    for (uint32_t q = 0; q < E810_NUM_QUEUES; q++) {
        if (ft->tx_hang[q]) {
            e810_fault_info_add(&tail, "tx-hang",
                                g_strdup_printf("Tx queue %u", q),
                                E810_FAULT_FOREVER, ft->tx_held[q]);
        }
    }
    return list;
}

/* ------------------------------------------------------------------ */
/* migration (the e810/faults subsection of the device, e810.c)        */

/* Is anything armed or in progress, i.e. is there state to migrate? */
bool e810_fault_pending(const E810Fault *ft)
{
    if (ft->aq_held || ft->arq_drop || ft->link_down || ft->tx_hang_all) {
        return true;
    }
    for (int i = 0; i < E810_FAULT_MAX_AQ; i++) {
        if (ft->aq[i].in_use) {
            return true;
        }
    }
    for (int i = 0; i < E810_FAULT_MAX_RX; i++) {
        if (ft->rx[i].in_use) {
            return true;
        }
    }
    for (uint32_t v = 0; v < E810_MAX_VECTORS; v++) {
        if (ft->irq_drop[v]) {
            return true;
        }
    }
    for (uint32_t q = 0; q < E810_NUM_QUEUES; q++) {
        if (ft->tx_hang[q]) {
            return true;
        }
    }
    return false;
}

static int e810_fault_post_load(void *opaque, int version_id)
{
    E810Fault *ft = opaque;

    /* values a stream could carry that the hooks would mis-use */
    for (int i = 0; i < E810_FAULT_MAX_RX; i++) {
        if (ft->rx[i].error >= E810_RX_DESC_ERROR__MAX) {
            ft->rx[i].in_use = 0;
        }
    }
    ft->aq_released = false;
    return 0;
}

static const VMStateDescription e810_vmstate_fault_aq = {
    .name = "e810/fault-aq",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT8(in_use, E810FaultAq),
        VMSTATE_UINT16(opcode, E810FaultAq),
        VMSTATE_UINT16(error, E810FaultAq),
        VMSTATE_UINT32(delay_ms, E810FaultAq),
        VMSTATE_INT32(remaining, E810FaultAq),
        VMSTATE_UINT64(fired, E810FaultAq),
        VMSTATE_END_OF_LIST()
    }
};

static const VMStateDescription e810_vmstate_fault_rx = {
    .name = "e810/fault-rx",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT8(in_use, E810FaultRx),
        VMSTATE_UINT8(error, E810FaultRx),
        VMSTATE_UINT16(queue, E810FaultRx),
        VMSTATE_INT32(remaining, E810FaultRx),
        VMSTATE_UINT64(fired, E810FaultRx),
        VMSTATE_END_OF_LIST()
    }
};

/* E810Fault, with the timers of a held command and of a link flap */
const VMStateDescription e810_vmstate_fault = {
    .name = "e810/fault",
    .version_id = 1,
    .minimum_version_id = 1,
    .post_load = e810_fault_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_STRUCT_ARRAY(aq, E810Fault, E810_FAULT_MAX_AQ, 1,
                             e810_vmstate_fault_aq, E810FaultAq),
        VMSTATE_BOOL(aq_held, E810Fault),
        VMSTATE_UINT16(aq_held_error, E810Fault),
        VMSTATE_UINT16(aq_held_opcode, E810Fault),
        VMSTATE_TIMER_PTR(aq_timer, E810Fault),
        VMSTATE_INT32(arq_drop, E810Fault),
        VMSTATE_UINT64(arq_drop_fired, E810Fault),
        VMSTATE_INT32_ARRAY(irq_drop, E810Fault, E810_MAX_VECTORS),
        VMSTATE_UINT32_ARRAY(irq_drop_fired, E810Fault, E810_MAX_VECTORS),
        VMSTATE_UINT64(irq_spurious_fired, E810Fault),
        VMSTATE_UINT64(resets_fired, E810Fault),
        VMSTATE_BOOL(link_down, E810Fault),
        VMSTATE_UINT32(link_down_ms, E810Fault),
        VMSTATE_TIMER_PTR(link_timer, E810Fault),
        VMSTATE_UINT64(link_flaps, E810Fault),
        VMSTATE_STRUCT_ARRAY(rx, E810Fault, E810_FAULT_MAX_RX, 1,
                             e810_vmstate_fault_rx, E810FaultRx),
        VMSTATE_BOOL(tx_hang_all, E810Fault),
        VMSTATE_UINT8_ARRAY(tx_hang, E810Fault, E810_NUM_QUEUES),
        VMSTATE_UINT32_ARRAY(tx_held, E810Fault, E810_NUM_QUEUES),
        VMSTATE_END_OF_LIST()
    }
};

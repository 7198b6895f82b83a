/*
 * QEMU Intel E810 ("ice") Ethernet controller: device-side fault injection
 *
 * Faults armed over QMP (qapi/e810.json: e810-fault-*, e810-reset,
 * e810-link-flap) and the hooks the device's nouns call to apply them.
 * Every fault that fires is traced (e810_fault_*) and reported with the
 * QMP event E810_FAULT.  Armed faults survive PF, core/global and device
 * resets (they are the test's, not the guest's); only e810-fault-clear
 * disarms them.
 *
 * Included by e810_core.h after E810_MAX_VECTORS and E810_NUM_QUEUES.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_NET_E810_FAULT_H
#define HW_NET_E810_FAULT_H

#include "qemu/timer.h"
#include "migration/vmstate.h"

typedef struct E810Core E810Core;

/* remaining count of a fault armed "until cleared" (count 0 over QMP) */
#define E810_FAULT_FOREVER          (-1)
#define E810_FAULT_MAX_AQ           8       /* opcodes armed at once */
#define E810_FAULT_MAX_RX           8       /* Rx error faults at once */
#define E810_FAULT_ANY_QUEUE        0xFFFF
#define E810_FAULT_MAX_SPURIOUS     1024    /* interrupts sent by one call */
#define E810_FAULT_MAX_MS           3600000 /* delays and link-down times */

/* One armed admin-queue fault: opcode -> error and/or delayed completion */
typedef struct E810FaultAq {
    uint8_t in_use;
    uint16_t opcode;
    uint16_t error;                 /* ice_aq_err; 0: none */
    uint32_t delay_ms;              /* 0: none */
    int32_t remaining;              /* E810_FAULT_FOREVER or > 0 */
    uint64_t fired;
} E810FaultAq;

/* One armed Rx descriptor error fault */
typedef struct E810FaultRx {
    uint8_t in_use;
    uint8_t error;                  /* E810RxDescError */
    uint16_t queue;                 /* E810_FAULT_ANY_QUEUE: any */
    int32_t remaining;
    uint64_t fired;
} E810FaultRx;

typedef struct E810Fault {
    /* admin queue */
    E810FaultAq aq[E810_FAULT_MAX_AQ];
    bool aq_held;                   /* ATQ head waits for aq_timer */
    bool aq_released;               /* (transient) aq_timer is running it */
    uint16_t aq_held_error;         /* error of the held command, 0: none */
    uint16_t aq_held_opcode;
    QEMUTimer *aq_timer;

    /* ARQ events */
    int32_t arq_drop;               /* remaining; 0: not armed */
    uint64_t arq_drop_fired;

    /* MSI-X: per-vector remaining drops (0: none) and drops so far */
    int32_t irq_drop[E810_MAX_VECTORS];
    uint32_t irq_drop_fired[E810_MAX_VECTORS];
    uint64_t irq_spurious_fired;

    /* resets signalled by QMP e810-reset */
    uint64_t resets_fired;

    /* link flap */
    bool link_down;                 /* the flap holds the link down */
    uint32_t link_down_ms;
    QEMUTimer *link_timer;
    uint64_t link_flaps;

    /* Rx descriptor errors */
    E810FaultRx rx[E810_FAULT_MAX_RX];

    /* Tx hang */
    bool tx_hang_all;
    uint8_t tx_hang[E810_NUM_QUEUES];
    uint32_t tx_held[E810_NUM_QUEUES];  /* doorbells not acted on */
} E810Fault;

/* lifecycle (e810_core.c) */
void e810_fault_realize(E810Core *core);
void e810_fault_unrealize(E810Core *core);

/* admin queue (e810_adminq.c) */
bool e810_fault_aq_match(E810Core *core, uint16_t opcode, uint16_t *error,
                         uint32_t *delay_ms);
void e810_fault_aq_hold(E810Core *core, uint16_t opcode, uint16_t error,
                        uint32_t delay_ms);
void e810_fault_aq_cancel(E810Core *core);
void e810_fault_aq_error_fired(E810Core *core, uint16_t opcode,
                               uint16_t error);
bool e810_fault_arq_drop(E810Core *core, uint16_t opcode);

/* interrupts (e810_intr.c): true when this message of vector is lost */
bool e810_fault_irq_drop(E810Core *core, uint32_t vector);

/* Rx (e810_rxq.c): status_error0 bits to add to this frame of queue q */
uint16_t e810_fault_rx_status(E810Core *core, uint32_t q);

/* Tx (e810_txq.c): true when queue q does not consume descriptors */
bool e810_fault_tx_hung(E810Core *core, uint32_t q);

/* migration: E810Fault as a VMSTATE_STRUCT of the device (e810.c) */
extern const VMStateDescription e810_vmstate_fault;
bool e810_fault_pending(const E810Fault *ft);

#endif

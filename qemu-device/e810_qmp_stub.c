/*
 * QEMU Intel E810 ("ice") Ethernet controller: the QMP commands of
 * qapi/e810.json for builds without the device (CONFIG_E810_PCI_EXPRESS
 * off); the schema is target-independent, so every command needs one.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-e810.h"

void qmp_e810_inject(const char *id, uint16_t queue, const char *data,
                     Error **errp)
{
    error_setg(errp, "this QEMU has no e810 device");
}

E810RssInfo *qmp_e810_query_rss(const char *id, bool has_vsi, uint16_t vsi,
                                Error **errp)
{
    error_setg(errp, "this QEMU has no e810 device");
    return NULL;
}

/* device-side fault injection (e810_fault.c) */
void qmp_e810_fault_aq(const char *id, uint16_t opcode, bool has_error,
                       uint16_t error, bool has_delay_ms, uint32_t delay_ms,
                       bool has_count, uint32_t count, Error **errp)
{
    error_setg(errp, "this QEMU has no e810 device");
}

void qmp_e810_fault_arq_drop(const char *id, bool has_count, uint32_t count,
                             Error **errp)
{
    error_setg(errp, "this QEMU has no e810 device");
}

void qmp_e810_fault_irq(const char *id, uint16_t vector,
                        E810IrqFaultAction action, bool has_count,
                        uint32_t count, Error **errp)
{
    error_setg(errp, "this QEMU has no e810 device");
}

void qmp_e810_reset(const char *id, E810ResetType type, Error **errp)
{
    error_setg(errp, "this QEMU has no e810 device");
}

void qmp_e810_link_flap(const char *id, bool has_down_ms, uint32_t down_ms,
                        Error **errp)
{
    error_setg(errp, "this QEMU has no e810 device");
}

void qmp_e810_fault_rx_desc(const char *id, E810RxDescError error,
                            bool has_queue, uint16_t queue, bool has_count,
                            uint32_t count, Error **errp)
{
    error_setg(errp, "this QEMU has no e810 device");
}

void qmp_e810_fault_tx_hang(const char *id, bool has_queue, uint16_t queue,
                            bool enable, Error **errp)
{
    error_setg(errp, "this QEMU has no e810 device");
}

void qmp_e810_fault_clear(const char *id, Error **errp)
{
    error_setg(errp, "this QEMU has no e810 device");
}

E810FaultInfoList *qmp_e810_query_faults(const char *id, Error **errp)
{
    error_setg(errp, "this QEMU has no e810 device");
    return NULL;
}

/*
 * QEMU Intel E810 ("ice") Ethernet controller: QMP stubs for builds
 * without the device (CONFIG_E810_PCI_EXPRESS off); the schema is
 * target-independent.
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

/*
 * QEMU Intel E810 ("ice") Ethernet controller: QMP e810-query-rss stub
 * for builds without the device (CONFIG_E810_PCI_EXPRESS off); the
 * schema is target-independent.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-e810.h"

E810RssInfo *qmp_e810_query_rss(const char *id, bool has_vsi, uint16_t vsi,
                                Error **errp)
{
    error_setg(errp, "this QEMU has no e810 device");
    return NULL;
}

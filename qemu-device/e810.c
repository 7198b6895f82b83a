/*
 * QEMU Intel Ethernet Controller E810 ("ice") -- PCI front-end
 *
 * This file only holds what makes the device a PCI Express function:
 * BARs, MSI-X, PCIe/AER/DSN capabilities, properties, the network
 * backend hook-up, reset and migration state.  Everything behind BAR0
 * lives in the E810 core (e810_core.h).
 *
 * Device identity: 8086:159B, "E810-XXV for SFP".  The ice driver maps
 * 159B to ICE_MAC_E810 (ice_set_mac_type(), ice_common.c), which
 *  - has no sideband control queue (ice_is_sbq_supported() is false for
 *    E810, ice_controlq.c), unlike E822/E823/E825 whose PHY is reached
 *    over that queue;
 *  - expects firmware API 1.5 (EXP_FW_API_VER_*_E810, ice_controlq.h),
 *    where E830 wants 1.7 and a different register set;
 *  - is not an E810-T: ice_is_e810t() only matches 0x1592/0x1593 with
 *    the ICE_SUBDEV_ID_E810T* subsystem ids, so there are no GNSS, CGU
 *    or SMA paths;
 *  - makes ice_is_pf_c827() return true without an admin command (only
 *    0x1592 asks the netlist), so the only extra probe step is polling
 *    GL_MNG_FWSM.FW_LOADING, which reads 0 here.
 * The subsystem id is 0x0003, not one of the E810-T ids (0x000E..0x0012,
 * 0x02E9, 0x02EA in ice_devids.h).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qemu/module.h"
#include "qemu/base64.h"
#include "qapi/error.h"
#include "qapi/qapi-commands-e810.h"
#include "hw/qdev-core.h"
#include "net/net.h"
#include "hw/pci/pci.h"
#include "hw/pci/pci_device.h"
#include "hw/pci/pcie.h"
#include "hw/pci/pcie_aer.h"
#include "hw/pci/msix.h"
#include "hw/qdev-properties.h"
#include "system/system.h"
#include "hw/sysbus.h"
#include "migration/vmstate.h"
#include "qom/object.h"

#include "e810_core.h"
#include "e810_ddp.h"
#include "e810_rss.h"
#include "trace.h"

#define TYPE_E810 "e810"
OBJECT_DECLARE_SIMPLE_TYPE(E810State, E810)

#define E810_VENDOR_ID          PCI_VENDOR_ID_INTEL
#define E810_DEVICE_ID          0x159B  /* ICE_DEV_ID_E810_XXV_SFP */
#define E810_SUBSYS_VENDOR_ID   PCI_VENDOR_ID_INTEL
#define E810_SUBSYS_ID          0x0003  /* not an ICE_SUBDEV_ID_E810T* */
#define E810_REVISION           0x02

/* BAR layout of a real E810 */
#define E810_MMIO_BAR           0
#define E810_MMIO_SIZE          (32 * MiB)
#define E810_MSIX_BAR           3
#define E810_MSIX_BAR_SIZE      (64 * KiB)
#define E810_MSIX_TABLE_OFFSET  0x0000
#define E810_MSIX_PBA_OFFSET    0x8000

/* config-space capability offsets */
#define E810_CAP_PM_OFFSET      0x40
#define E810_CAP_MSIX_OFFSET    0x70
#define E810_CAP_PCIE_OFFSET    0xA0
#define E810_EXTCAP_AER_OFFSET  0x100
#define E810_EXTCAP_DSN_OFFSET  0x150

struct E810State {
    PCIDevice parent_obj;

    NICState *nic;
    NICConf conf;

    MemoryRegion mmio;
    MemoryRegion msix;

    uint32_t msix_vectors;
    uint32_t num_queues;
    uint64_t dsn;
    bool aer;

    /* migration: the backend's carrier (NetClientState.link_down) */
    bool mig_link_down;

    E810Core core;
};

/* ------------------------------------------------------------------ */
/* network backend                                                     */

static bool e810_nc_can_receive(NetClientState *nc)
{
    E810State *s = qemu_get_nic_opaque(nc);

    return e810_rx_can_receive(&s->core);
}

static ssize_t e810_nc_receive_iov(NetClientState *nc,
                                   const struct iovec *iov, int iovcnt)
{
    E810State *s = qemu_get_nic_opaque(nc);

    return e810_rx_receive(&s->core, iov, iovcnt);
}

static ssize_t e810_nc_receive(NetClientState *nc, const uint8_t *buf,
                               size_t size)
{
    const struct iovec iov = { .iov_base = (uint8_t *)buf, .iov_len = size };

    return e810_nc_receive_iov(nc, &iov, 1);
}

static void e810_nc_link_status_changed(NetClientState *nc)
{
    E810State *s = qemu_get_nic_opaque(nc);

    trace_e810_link_status_changed(!nc->link_down);
    e810_link_status_changed(&s->core);
}

static NetClientInfo e810_net_info = {
    .type = NET_CLIENT_DRIVER_NIC,
    .size = sizeof(NICState),
    .can_receive = e810_nc_can_receive,
    .receive = e810_nc_receive,
    .receive_iov = e810_nc_receive_iov,
    .link_status_changed = e810_nc_link_status_changed,
};

/*
 * The device a QMP command names: the e810 whose qdev id is 'id', or
 * the only one of the machine when 'id' is omitted (qapi/e810.json).
 */
E810Core *e810_core_find(const char *id, Error **errp)
{
    Object *obj;

    if (id) {
        DeviceState *dev = qdev_find_recursive(sysbus_get_default(), id);

        obj = dev ? object_dynamic_cast(OBJECT(dev), TYPE_E810) : NULL;
        if (!obj) {
            error_setg(errp, "no e810 device with id '%s'", id);
            return NULL;
        }
    } else {
        bool ambiguous = false;

        obj = object_resolve_path_type("", TYPE_E810, &ambiguous);
        if (!obj) {
            error_setg(errp, ambiguous ? "more than one e810 device: "
                       "say which with 'id'" : "no e810 device");
            return NULL;
        }
    }
    return &E810(obj)->core;
}

/*
 * QMP e810-inject (qapi/e810.json): a frame straight into one Rx queue,
 * as if RSS had picked that queue, so a test can hit queue q -- and the
 * vector QINT_RQCTL(q) names -- on purpose.
 */
void qmp_e810_inject(const char *id, uint16_t queue, const char *data,
                     Error **errp)
{
    E810Core *core = e810_core_find(id, errp);
    g_autofree uint8_t *frame = NULL;
    size_t len;

    if (!core) {
        return;
    }
    frame = qbase64_decode(data, -1, &len, errp);
    if (!frame) {
        return;
    }
    e810_rxq_inject(core, queue, frame, len, errp);
}

/* QMP e810-query-rss (qapi/e810.json): RSS key, LUT, profiles, package */
E810RssInfo *qmp_e810_query_rss(const char *id, bool has_vsi, uint16_t vsi,
                                Error **errp)
{
    E810Core *core = e810_core_find(id, errp);

    return core ? e810_rss_query(core, has_vsi, vsi, errp) : NULL;
}

/* ------------------------------------------------------------------ */
/* realize / exit                                                      */

static uint64_t e810_default_dsn(const uint8_t *mac)
{
    /* EUI-64 from the MAC, the way Intel NICs derive their DSN */
    return ((uint64_t)mac[0] << 56) | ((uint64_t)mac[1] << 48) |
           ((uint64_t)mac[2] << 40) | (0xFFULL << 32) | (0xFFULL << 24) |
           ((uint64_t)mac[3] << 16) | ((uint64_t)mac[4] << 8) | mac[5];
}

static void e810_pci_realize(PCIDevice *pci_dev, Error **errp)
{
    E810State *s = E810(pci_dev);
    DeviceState *dev = DEVICE(pci_dev);
    int ret;

    if (s->msix_vectors < E810_MIN_VECTORS ||
        s->msix_vectors > E810_MAX_VECTORS) {
        error_setg(errp, "msix-vectors must be in %u..%u, got %u",
                   E810_MIN_VECTORS, E810_MAX_VECTORS, s->msix_vectors);
        return;
    }
    if (s->num_queues < 1 || s->num_queues > E810_NUM_QUEUES) {
        error_setg(errp, "queues must be in 1..%u, got %u",
                   E810_NUM_QUEUES, s->num_queues);
        return;
    }

    pci_dev->config[PCI_CACHE_LINE_SIZE] = 0x10;
    pci_dev->config[PCI_INTERRUPT_PIN] = 1;

    qemu_macaddr_default_if_unset(&s->conf.macaddr);

    /* BAR0: the register file, 64-bit prefetchable like real E810 */
    memory_region_init_io(&s->mmio, OBJECT(s), &e810_mmio_ops, &s->core,
                          "e810-mmio", E810_MMIO_SIZE);
    pci_register_bar(pci_dev, E810_MMIO_BAR,
                     PCI_BASE_ADDRESS_SPACE_MEMORY |
                     PCI_BASE_ADDRESS_MEM_TYPE_64 |
                     PCI_BASE_ADDRESS_MEM_PREFETCH, &s->mmio);

    /* BAR3: MSI-X table at 0 and PBA at 0x8000 */
    memory_region_init(&s->msix, OBJECT(s), "e810-msix", E810_MSIX_BAR_SIZE);
    pci_register_bar(pci_dev, E810_MSIX_BAR,
                     PCI_BASE_ADDRESS_SPACE_MEMORY |
                     PCI_BASE_ADDRESS_MEM_TYPE_64 |
                     PCI_BASE_ADDRESS_MEM_PREFETCH, &s->msix);

    if (pci_pm_init(pci_dev, E810_CAP_PM_OFFSET, errp) < 0) {
        return;
    }

    ret = msix_init(pci_dev, s->msix_vectors,
                    &s->msix, E810_MSIX_BAR, E810_MSIX_TABLE_OFFSET,
                    &s->msix, E810_MSIX_BAR, E810_MSIX_PBA_OFFSET,
                    E810_CAP_MSIX_OFFSET, errp);
    if (ret) {
        return;
    }
    for (uint32_t v = 0; v < s->msix_vectors; v++) {
        msix_vector_use(pci_dev, v);
    }

    if (pcie_endpoint_cap_init(pci_dev, E810_CAP_PCIE_OFFSET) < 0) {
        error_setg(errp, "failed to add the PCIe capability");
        goto err_msix;
    }
    pcie_cap_deverr_init(pci_dev);
    pcie_cap_flr_init(pci_dev);

    if (s->aer) {
        if (pcie_aer_init(pci_dev, PCI_ERR_VER, E810_EXTCAP_AER_OFFSET,
                          PCI_ERR_SIZEOF, errp) < 0) {
            goto err_pcie;
        }
    }
    pcie_dev_ser_num_init(pci_dev, s->aer ? E810_EXTCAP_DSN_OFFSET
                                          : E810_EXTCAP_AER_OFFSET,
                          s->dsn ? s->dsn
                                 : e810_default_dsn(s->conf.macaddr.a));

    s->nic = qemu_new_nic(&e810_net_info, &s->conf,
                          object_get_typename(OBJECT(s)), dev->id,
                          &dev->mem_reentrancy_guard, s);
    qemu_format_nic_info_str(qemu_get_queue(s->nic), s->conf.macaddr.a);

    s->core.owner = pci_dev;
    s->core.nic = s->nic;
    s->core.conf = &s->conf;
    s->core.msix_vectors = s->msix_vectors;
    s->core.num_queues = s->num_queues;
    e810_core_realize(&s->core);
    return;

err_pcie:
    pcie_cap_exit(pci_dev);
err_msix:
    msix_unuse_all_vectors(pci_dev);
    msix_uninit(pci_dev, &s->msix, &s->msix);
}

static void e810_pci_exit(PCIDevice *pci_dev)
{
    E810State *s = E810(pci_dev);

    e810_core_unrealize(&s->core);
    qemu_del_nic(s->nic);
    if (s->aer) {
        pcie_aer_exit(pci_dev);
    }
    pcie_cap_exit(pci_dev);
    msix_unuse_all_vectors(pci_dev);
    msix_uninit(pci_dev, &s->msix, &s->msix);
}

static void e810_reset_hold(Object *obj, ResetType type)
{
    E810State *s = E810(obj);

    e810_core_reset(&s->core);
}

static void e810_write_config(PCIDevice *pci_dev, uint32_t addr,
                              uint32_t val, int len)
{
    pci_default_write_config(pci_dev, addr, val, len);
    if (range_covers_byte(addr, len, PCI_COMMAND) &&
        !(pci_dev->config[PCI_COMMAND] & PCI_COMMAND_MASTER)) {
        trace_e810_bus_master_off();
    }
}

/* ------------------------------------------------------------------ */
/* migration                                                           */

static const VMStateDescription e810_vmstate_ctlq = {
    .name = "e810/ctlq",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(bal, E810CtlQ),
        VMSTATE_UINT32(bah, E810CtlQ),
        VMSTATE_UINT32(len, E810CtlQ),
        VMSTATE_UINT32(head, E810CtlQ),
        VMSTATE_UINT32(tail, E810CtlQ),
        VMSTATE_END_OF_LIST()
    }
};

static const VMStateDescription e810_vmstate_sched_node = {
    .name = "e810/sched-node",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(teid, E810SchedNode),
        VMSTATE_UINT32(parent_teid, E810SchedNode),
        VMSTATE_UINT8(in_use, E810SchedNode),
        VMSTATE_UINT8(elem_type, E810SchedNode),
        VMSTATE_UINT8(layer, E810SchedNode),
        VMSTATE_UINT8_ARRAY(data, E810SchedNode, E810_SCHED_ELEM_DATA),
        VMSTATE_UINT16(txq_id, E810SchedNode),
        VMSTATE_END_OF_LIST()
    }
};

static const VMStateDescription e810_vmstate_vsi = {
    .name = "e810/vsi",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT8(in_use, E810Vsi),
        VMSTATE_UINT16(vsi_num, E810Vsi),
        VMSTATE_UINT8_ARRAY(props, E810Vsi, E810_VSI_PROPS_SIZE),
        VMSTATE_END_OF_LIST()
    }
};

static const VMStateDescription e810_vmstate_sw_rule = {
    .name = "e810/sw-rule",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT8(in_use, E810SwRule),
        VMSTATE_UINT16(index, E810SwRule),
        VMSTATE_UINT16(type, E810SwRule),
        VMSTATE_UINT32(act, E810SwRule),
        VMSTATE_UINT8_ARRAY(hdr, E810SwRule, 16),
        VMSTATE_END_OF_LIST()
    }
};

static const VMStateDescription e810_vmstate_res_alloc = {
    .name = "e810/res-alloc",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT8(in_use, E810ResAlloc),
        VMSTATE_UINT16(res_type, E810ResAlloc),
        VMSTATE_UINT16(id, E810ResAlloc),
        VMSTATE_END_OF_LIST()
    }
};

static const VMStateDescription e810_vmstate_link = {
    .name = "e810/link",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_BOOL(lse_enabled, E810Link),
        VMSTATE_UINT16(event_mask, E810Link),
        VMSTATE_UINT64(phy_type_low, E810Link),
        VMSTATE_UINT64(phy_type_high, E810Link),
        VMSTATE_UINT8(phy_caps, E810Link),
        VMSTATE_UINT8(low_power_ctrl_an, E810Link),
        VMSTATE_UINT16(eee_cap, E810Link),
        VMSTATE_UINT16(eeer, E810Link),
        VMSTATE_UINT8(link_fec_opt, E810Link),
        VMSTATE_UINT8(module_compliance_enforcement, E810Link),
        VMSTATE_BOOL(phy_cfg_set, E810Link),
        VMSTATE_UINT16(max_frame_size, E810Link),
        VMSTATE_END_OF_LIST()
    }
};

/*
 * Data path state: the device's Rx heads, the Tx "drop up to EOP" flags
 * and the interrupt moderation state (pending ITR indices and hold-off
 * deadlines on QEMU_CLOCK_VIRTUAL; the timers are re-armed from them in
 * post_load).  Tx heads are QTX_COMM_HEAD above; no partial Tx frame
 * exists between doorbell writes.
 */
static int e810_datapath_post_load(void *opaque, int version_id)
{
    E810State *s = opaque;

    for (uint32_t q = 0; q < E810_NUM_QUEUES; q++) {
        s->core.rxq_head[q] &= QRX_TAIL_TAIL_M;
        s->core.qtx_comm_head[q] &= QTX_COMM_HEAD_HEAD_M;
    }
    e810_intr_post_load(&s->core);
    return 0;
}

static const VMStateDescription e810_vmstate_datapath = {
    .name = "e810/datapath",
    .version_id = 1,
    .minimum_version_id = 1,
    .post_load = e810_datapath_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32_ARRAY(core.rxq_head, E810State, E810_NUM_QUEUES),
        VMSTATE_UINT8_ARRAY(core.txq_skip, E810State, E810_NUM_QUEUES),
        VMSTATE_UINT32(core.rx_drops, E810State),
        VMSTATE_UINT64(core.rx_packets, E810State),
        VMSTATE_UINT64(core.tx_packets, E810State),
        VMSTATE_UINT64(core.tx_drops, E810State),
        VMSTATE_UINT8_ARRAY(core.intr_itr_mask, E810State, E810_MAX_VECTORS),
        VMSTATE_INT64_ARRAY(core.intr_holdoff, E810State, E810_MAX_VECTORS),
        VMSTATE_END_OF_LIST()
    }
};

/*
 * The device's configuration and the backend's carrier.  The properties
 * that size the state (vectors, queues) must match on both sides, else
 * the load fails with a clear message rather than a guest that sees its
 * MSI-X table or queues change under it.  QEMU does not migrate a NIC's
 * NetClientState.link_down (set_link): without it a link taken down on the
 * source would come back up on the destination with no link event, so it
 * travels here and post_load puts it back, as e1000 does from its STATUS.
 * intr_count is the interrupt counter QMP reads back.
 */
static int e810_config_pre_save(void *opaque)
{
    E810State *s = opaque;

    s->mig_link_down = qemu_get_queue(s->nic)->link_down;
    return 0;
}

static int e810_config_post_load(void *opaque, int version_id)
{
    E810State *s = opaque;

    qemu_get_queue(s->nic)->link_down = s->mig_link_down;
    return 0;
}

static const VMStateDescription e810_vmstate_config = {
    .name = "e810/config-link",
    .version_id = 1,
    .minimum_version_id = 1,
    .pre_save = e810_config_pre_save,
    .post_load = e810_config_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32_EQUAL(msix_vectors, E810State, NULL),
        VMSTATE_UINT32_EQUAL(num_queues, E810State, NULL),
        VMSTATE_BOOL(mig_link_down, E810State),
        VMSTATE_UINT64(core.intr_count, E810State),
        VMSTATE_END_OF_LIST()
    }
};

/*
 * Armed faults, a command held on the ATQ and a link flap, with their
 * timers (e810_fault.c).  Only sent when one of them is there, so
 * streams without faults stay loadable by a QEMU without this
 * subsection.  Version 2: the reset in progress left for e810/reset; a
 * version 1 stream carrying this subsection is refused, not misread.
 */
static bool e810_faults_needed(void *opaque)
{
    E810State *s = opaque;

    return e810_fault_pending(&s->core.fault);
}

static const VMStateDescription e810_vmstate_faults = {
    .name = "e810/faults",
    .version_id = 2,
    .minimum_version_id = 2,
    .needed = e810_faults_needed,
    .fields = (const VMStateField[]) {
        VMSTATE_STRUCT(core.fault, E810State, 0, e810_vmstate_fault,
                       E810Fault),
        VMSTATE_END_OF_LIST()
    }
};

/*
 * A core/global/EMP reset in progress (e810_core_global_reset()) and the
 * timer that completes it; only sent while one is.
 */
static bool e810_reset_needed(void *opaque)
{
    E810State *s = opaque;

    return s->core.reset_type != 0;
}

static int e810_reset_post_load(void *opaque, int version_id)
{
    E810State *s = opaque;

    /* a value e810_fault.c's reset name table would mis-use */
    if (s->core.reset_type > E810_RESET_EMPR) {
        s->core.reset_type = 0;
    }
    return 0;
}

static const VMStateDescription e810_vmstate_reset = {
    .name = "e810/reset",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = e810_reset_needed,
    .post_load = e810_reset_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT32(core.reset_type, E810State),
        VMSTATE_TIMER_PTR(core.reset_timer, E810State),
        VMSTATE_END_OF_LIST()
    }
};

/* MAC loopback (0x0620), only while it is on: the ethtool self-test's */
static bool e810_mac_lb_needed(void *opaque)
{
    E810State *s = opaque;

    return s->core.link.mac_loopback;
}

static const VMStateDescription e810_vmstate_mac_lb = {
    .name = "e810/mac-loopback",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = e810_mac_lb_needed,
    .fields = (const VMStateField[]) {
        VMSTATE_BOOL(core.link.mac_loopback, E810State),
        VMSTATE_END_OF_LIST()
    }
};

/* Firmware logging configuration, only once it differs from the default */
static bool e810_fwlog_needed(void *opaque)
{
    E810State *s = opaque;

    return !e810_fwlog_is_default(&s->core);
}

static int e810_fwlog_post_load(void *opaque, int version_id)
{
    E810State *s = opaque;

    for (int i = 0; i < E810_FWLOG_MODULES; i++) {
        if (s->core.fwlog.level[i] >= E810_FWLOG_LEVELS) {
            return -EINVAL;
        }
    }
    return 0;
}

static const VMStateDescription e810_vmstate_fwlog = {
    .name = "e810/fwlog",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = e810_fwlog_needed,
    .post_load = e810_fwlog_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_UINT8_ARRAY(core.fwlog.level, E810State, E810_FWLOG_MODULES),
        VMSTATE_UINT16(core.fwlog.resolution, E810State),
        VMSTATE_BOOL(core.fwlog.uart_en, E810State),
        VMSTATE_BOOL(core.fwlog.aq_en, E810State),
        VMSTATE_BOOL(core.fwlog.registered, E810State),
        VMSTATE_END_OF_LIST()
    }
};

/* LLDP MIB change events (0x0A01), only while enabled */
static bool e810_dcb_needed(void *opaque)
{
    E810State *s = opaque;

    return s->core.lldp_mib_change;
}

static const VMStateDescription e810_vmstate_dcb = {
    .name = "e810/dcb",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = e810_dcb_needed,
    .fields = (const VMStateField[]) {
        VMSTATE_BOOL(core.lldp_mib_change, E810State),
        VMSTATE_END_OF_LIST()
    }
};

/*
 * DDP package, flexible-pipeline tables (current and the package's
 * defaults, restored by a PF reset), profile/TCAM id pools and RSS
 * keys/LUTs (e810_ddp.c, e810_rss.c).
 */
static const VMStateDescription e810_vmstate_ddp = {
    .name = "e810/ddp-rss",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields = (const VMStateField[]) {
        VMSTATE_STRUCT(core.ddp, E810State, 1, e810_vmstate_ddp_state,
                       E810Ddp),
        VMSTATE_STRUCT(core.flex, E810State, 1, e810_vmstate_flex, E810Flex),
        VMSTATE_STRUCT(core.rss, E810State, 1, e810_vmstate_rss, E810Rss),
        VMSTATE_END_OF_LIST()
    }
};

/*
 * Control queues: the admin queue engine runs a command to completion
 * inside the ATQ tail write (e810_adminq.c), so between two vCPU
 * instructions no command is half-done in the device: the in-flight state
 * is the ring registers above plus the descriptors and buffers in guest
 * RAM (a command the driver posted but whose tail write has not happened
 * yet is still the driver's).  The one exception is a command held by an
 * armed AQ delay fault: it and its completion timer travel in the
 * e810/faults subsection (e810_fault.c).  The indices are masked to their
 * register fields as the register writes do.
 */
static int e810_post_load(void *opaque, int version_id)
{
    E810State *s = opaque;

    for (int i = 0; i < E810_CQ_NUM; i++) {
        E810CtlQ *q = &s->core.cq[i];

        q->head &= PF_FW_ATQH_ATQH_M;
        q->tail &= PF_FW_ATQH_ATQH_M;
    }
    return 0;
}

static const VMStateDescription e810_vmstate = {
    .name = "e810",
    .version_id = 1,
    .minimum_version_id = 1,
    .post_load = e810_post_load,
    .fields = (const VMStateField[]) {
        VMSTATE_PCI_DEVICE(parent_obj, E810State),
        VMSTATE_MSIX(parent_obj, E810State),

        /* firmware-visible state */
        VMSTATE_UINT32(core.glgen_rstat, E810State),
        VMSTATE_UINT32(core.glnvm_uld, E810State),
        VMSTATE_UINT32(core.gl_mdck_tx_tdpu, E810State),
        VMSTATE_UINT32(core.pfqf_fd_ena, E810State),
        VMSTATE_UINT32(core.pfpm_wus, E810State),
        VMSTATE_UINT32(core.pfpm_wufc, E810State),
        VMSTATE_UINT32(core.pfpm_apm, E810State),
        VMSTATE_UINT32_ARRAY(core.gl_preext_l2_pmask, E810State, 2),
        VMSTATE_UINT32_ARRAY(core.glqf_hmask, E810State,
                             GLQF_HMASK_MAX_INDEX + 1),
        VMSTATE_UINT32_ARRAY(core.glqf_hmask_sel, E810State,
                             GLQF_HMASK_SEL_MAX_INDEX + 1),
        VMSTATE_UINT32_ARRAY(core.glqf_fdmask, E810State,
                             GLQF_FDMASK_MAX_INDEX + 1),
        VMSTATE_UINT32_ARRAY(core.glqf_fdmask_sel, E810State,
                             GLQF_HMASK_SEL_MAX_INDEX + 1),
        VMSTATE_STRUCT_ARRAY(core.cq, E810State, E810_CQ_NUM, 1,
                             e810_vmstate_ctlq, E810CtlQ),

        /* interrupts */
        VMSTATE_UINT32(core.glint_ctl, E810State),
        VMSTATE_UINT32(core.pfint_oicr, E810State),
        VMSTATE_UINT32(core.pfint_oicr_ena, E810State),
        VMSTATE_UINT32(core.pfint_oicr_ctl, E810State),
        VMSTATE_UINT32(core.pfint_fw_ctl, E810State),
        VMSTATE_UINT32(core.pfint_mbx_ctl, E810State),
        VMSTATE_UINT32(core.pfint_sb_ctl, E810State),
        VMSTATE_UINT32(core.pfint_tsyn_msk, E810State),
        VMSTATE_UINT32_ARRAY(core.glint_dyn_ctl, E810State, E810_MAX_VECTORS),
        VMSTATE_UINT32_2DARRAY(core.glint_itr, E810State, 3,
                               E810_MAX_VECTORS),
        VMSTATE_UINT32_ARRAY(core.glint_rate, E810State, E810_MAX_VECTORS),
        VMSTATE_UINT32_ARRAY(core.glint_vect2func, E810State,
                             E810_MAX_VECTORS),
        VMSTATE_UINT8_ARRAY(core.intr_pending, E810State, E810_MAX_VECTORS),

        /* LAN queues */
        VMSTATE_UINT32_ARRAY(core.qint_rqctl, E810State, E810_NUM_QUEUES),
        VMSTATE_UINT32_ARRAY(core.qint_tqctl, E810State, E810_NUM_QUEUES),
        VMSTATE_UINT32_ARRAY(core.qrx_ctrl, E810State, E810_NUM_QUEUES),
        VMSTATE_UINT32_2DARRAY(core.qrx_context, E810State,
                               E810_QRX_CONTEXT_DWORDS, E810_NUM_QUEUES),
        VMSTATE_UINT32_ARRAY(core.qrx_tail, E810State, E810_NUM_QUEUES),
        VMSTATE_UINT32_ARRAY(core.qrx_itr, E810State, E810_NUM_QUEUES),
        VMSTATE_UINT32_ARRAY(core.qrxflxp_cntxt, E810State, E810_NUM_QUEUES),
        VMSTATE_UINT32_ARRAY(core.qtx_comm_dbell, E810State, E810_NUM_QUEUES),
        VMSTATE_UINT32_ARRAY(core.qtx_comm_head, E810State, E810_NUM_QUEUES),
        VMSTATE_UINT8_ARRAY(core.txq_enabled, E810State, E810_NUM_QUEUES),
        VMSTATE_UINT32_ARRAY(core.txq_teid, E810State, E810_NUM_QUEUES),
        VMSTATE_UINT8_2DARRAY(core.txq_ctx, E810State, E810_NUM_QUEUES, 22),

        /* resources, scheduler, switch, link */
        VMSTATE_UINT8_ARRAY(core.res_owned, E810State, E810_NUM_RES),
        VMSTATE_UINT8_ARRAY(core.res_access, E810State, E810_NUM_RES),
        VMSTATE_STRUCT_ARRAY(core.sched, E810State, E810_SCHED_MAX_NODES, 1,
                             e810_vmstate_sched_node, E810SchedNode),
        VMSTATE_UINT32(core.sched_next_teid, E810State),
        VMSTATE_STRUCT_ARRAY(core.vsi, E810State, E810_NUM_VSI_TRACKED, 1,
                             e810_vmstate_vsi, E810Vsi),
        VMSTATE_STRUCT_ARRAY(core.rules, E810State, E810_MAX_SW_RULES, 1,
                             e810_vmstate_sw_rule, E810SwRule),
        VMSTATE_UINT16(core.next_rule_index, E810State),
        VMSTATE_STRUCT_ARRAY(core.res_alloc, E810State, E810_MAX_RES_ALLOC, 1,
                             e810_vmstate_res_alloc, E810ResAlloc),
        VMSTATE_UINT16(core.next_res_id, E810State),
        VMSTATE_UINT16(core.next_vsi_num, E810State),
        VMSTATE_BOOL(core.port_params_set, E810State),
        VMSTATE_STRUCT(core.link, E810State, 1, e810_vmstate_link, E810Link),

        VMSTATE_UINT8_ARRAY(core.drv_ver, E810State, 4),
        VMSTATE_END_OF_LIST()
    },
    .subsections = (const VMStateDescription * const []) {
        &e810_vmstate_datapath,
        &e810_vmstate_ddp,
        &e810_vmstate_config,
        &e810_vmstate_faults,
        &e810_vmstate_reset,
        &e810_vmstate_mac_lb,
        &e810_vmstate_fwlog,
        &e810_vmstate_dcb,
        NULL
    }
};

/* ------------------------------------------------------------------ */
/* QOM                                                                 */

static const Property e810_properties[] = {
    DEFINE_NIC_PROPERTIES(E810State, conf),
    DEFINE_PROP_UINT32("msix-vectors", E810State, msix_vectors,
                       E810_DEFAULT_VECTORS),
    DEFINE_PROP_UINT32("queues", E810State, num_queues, E810_NUM_QUEUES),
    DEFINE_PROP_UINT64("dsn", E810State, dsn, 0),
    DEFINE_PROP_BOOL("aer", E810State, aer, true),
};

static void e810_class_init(ObjectClass *klass, void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    ResettableClass *rc = RESETTABLE_CLASS(klass);
    PCIDeviceClass *k = PCI_DEVICE_CLASS(klass);

    k->realize = e810_pci_realize;
    k->exit = e810_pci_exit;
    k->config_write = e810_write_config;
    k->vendor_id = E810_VENDOR_ID;
    k->device_id = E810_DEVICE_ID;
    k->revision = E810_REVISION;
    k->class_id = PCI_CLASS_NETWORK_ETHERNET;
    k->subsystem_vendor_id = E810_SUBSYS_VENDOR_ID;
    k->subsystem_id = E810_SUBSYS_ID;

    rc->phases.hold = e810_reset_hold;

    dc->desc = "Intel Ethernet Controller E810-XXV (ice)";
    dc->vmsd = &e810_vmstate;
    device_class_set_props(dc, e810_properties);
    set_bit(DEVICE_CATEGORY_NETWORK, dc->categories);
}

static void e810_instance_init(Object *obj)
{
    E810State *s = E810(obj);

    device_add_bootindex_property(obj, &s->conf.bootindex, "bootindex",
                                  "/ethernet-phy@0", DEVICE(obj));
}

static const TypeInfo e810_info = {
    .name = TYPE_E810,
    .parent = TYPE_PCI_DEVICE,
    .instance_size = sizeof(E810State),
    .class_init = e810_class_init,
    .instance_init = e810_instance_init,
    .interfaces = (InterfaceInfo[]) {
        { INTERFACE_PCIE_DEVICE },
        { }
    },
};

static void e810_register_types(void)
{
    type_register_static(&e810_info);
}

type_init(e810_register_types)

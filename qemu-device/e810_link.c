/*
 * QEMU Intel E810 ("ice") Ethernet controller: link, PHY and MAC
 *
 * One 25GBASE-SR port.  Media is always present; the link is up when the
 * network backend's link is up and the PHY configuration has link enabled
 * (ICE_AQC_PHY_EN_LINK, set by default and by 0x0601).  Link changes are
 * reported as 0x0607 events on the ARQ while link-status events are
 * enabled (0x0607 with LSE_ENA) and UPDOWN is not masked (0x0613).
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "net/net.h"
#include "e810_core.h"
#include "e810_adminq.h"
#include "trace.h"

#define ICE_AQC_PHY_FEC_DEFAULT         0xCC  /* RS528/KR req, CL91/CL74 en */
#define E810_MOD_TYPE_BYTE0             0x10  /* module_type[0] answered */

static bool e810_backend_link_up(E810Core *core)
{
    return core->nic && !qemu_get_queue(core->nic)->link_down;
}

bool e810_link_is_up(E810Core *core)
{
    return e810_backend_link_up(core) &&
           (core->link.phy_caps & ICE_AQC_PHY_EN_LINK) &&
           !core->fault.link_down;          /* QMP e810-link-flap */
}

static void e810_link_fill(E810Core *core,
                           struct ice_aqc_get_link_status_data *d)
{
    bool up = e810_link_is_up(core);

    *d = (struct ice_aqc_get_link_status_data) {
        .link_info = ICE_AQ_MEDIA_AVAILABLE |
                     (up ? ICE_AQ_LINK_UP | ICE_AQ_SIGNAL_DETECT : 0),
        .an_info = ICE_AQ_QUALIFIED_MODULE,
        .max_frame_size = cpu_to_le16(core->link.max_frame_size),
        .link_speed = cpu_to_le16(ICE_AQ_LINK_SPEED_25GB),
        .phy_type_low = cpu_to_le64(ICE_PHY_TYPE_LOW_25GBASE_SR),
    };
    if (up) {
        d->an_info |= ICE_AQ_AN_COMPLETED | ICE_AQ_FEC_EN;
        /* pause as configured (ICE_AQC_PHY_EN_TX/RX_LINK_PAUSE) */
        d->an_info |= (core->link.phy_caps & ICE_AQC_PHY_EN_TX_LINK_PAUSE ?
                       ICE_AQ_LINK_PAUSE_TX : 0) |
                      (core->link.phy_caps & ICE_AQC_PHY_EN_RX_LINK_PAUSE ?
                       ICE_AQ_LINK_PAUSE_RX : 0);
        d->cfg = ICE_AQ_LINK_25G_RS_528_FEC_EN;
    }
}

/* Post a link-status event if the driver asked for them */
static void e810_link_event(E810Core *core)
{
    union ice_aq_params params = { 0 };
    struct ice_aqc_get_link_status_data data;

    if (!core->link.lse_enabled ||
        (core->link.event_mask & ICE_AQ_LINK_EVENT_UPDOWN)) {
        trace_e810_link_event_suppressed(core->link.lse_enabled,
                                         core->link.event_mask);
        return;
    }
    e810_link_fill(core, &data);
    params.get_link_status.cmd_flags = cpu_to_le16(ICE_AQ_LSE_IS_ENABLED);
    trace_e810_link_event(e810_link_is_up(core));
    e810_arq_post(core, ice_aqc_opc_get_link_status, 0, &params, &data,
                  ICE_GET_LINK_STATUS_DATALEN_V1);
}

void e810_link_status_changed(E810Core *core)
{
    e810_link_event(core);
}

/* QMP e810-link-flap holds the link down (down) or lets it come back */
void e810_link_fault_down(E810Core *core, bool down)
{
    bool was_up = e810_link_is_up(core);

    core->fault.link_down = down;
    trace_e810_link_fault(down);
    if (was_up != e810_link_is_up(core)) {
        e810_link_event(core);
    }
}

/* 0x0107 manage_mac_read: the LAN address from -device e810,mac= */
uint16_t e810_aq_manage_mac_read(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_manage_mac_read_resp *r = (void *)cmd->buf;

    if (!e810_aq_need_buf(cmd, sizeof(*r))) {
        return ICE_AQ_RC_EINVAL;
    }
    *r = (struct ice_aqc_manage_mac_read_resp) {
        .lport_num = 0,
        .addr_type = ICE_AQC_MAN_MAC_ADDR_TYPE_LAN,
    };
    memcpy(r->mac_addr, core->conf->macaddr.a, sizeof(r->mac_addr));
    cmd->params.mac_read.flags = cpu_to_le16(ICE_AQC_MAN_MAC_LAN_ADDR_VALID);
    cmd->params.mac_read.num_addr = 1;
    cmd->resp_len = sizeof(*r);
    return ICE_AQ_RC_OK;
}

/* 0x0108 manage_mac_write: a locally administered address; accepted */
uint16_t e810_aq_manage_mac_write(E810Core *core, E810AqCmd *cmd)
{
    const uint8_t *mac = cmd->params.mac_write.mac_addr;

    trace_e810_mac_write(mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
    return ICE_AQ_RC_OK;
}

/* 0x0600 get_phy_caps (struct ice_aqc_get_phy_caps_data) */
uint16_t e810_aq_get_phy_caps(E810Core *core, E810AqCmd *cmd)
{
    uint16_t mode = le16_to_cpu(cmd->params.get_phy.param0) &
                    ICE_AQC_REPORT_MODE_M;
    struct ice_aqc_get_phy_caps_data d = { 0 };
    static const uint8_t intel_oui[4] = { 0x00, 0x1b, 0x21, 0x00 };

    /* up to the module table; the driver's buffer is the whole struct */
    if (!e810_aq_need_buf(cmd, offsetof(struct ice_aqc_get_phy_caps_data,
                                        qual_modules))) {
        return ICE_AQ_RC_EINVAL;
    }
    trace_e810_phy_caps(mode);
    if (mode == ICE_AQC_REPORT_ACTIVE_CFG) {
        d.phy_type_low = cpu_to_le64(core->link.phy_type_low);
        d.phy_type_high = cpu_to_le64(core->link.phy_type_high);
        d.caps = core->link.phy_caps;
        d.low_power_ctrl_an = core->link.low_power_ctrl_an;
        d.eee_cap = cpu_to_le16(core->link.eee_cap);
        d.eeer_value = cpu_to_le16(core->link.eeer);
        d.link_fec_options = core->link.link_fec_opt;
        d.module_compliance_enforcement =
            core->link.module_compliance_enforcement;
    } else {
        /* topology/NVM/default capabilities: what the port can do */
        d.phy_type_low = cpu_to_le64(ICE_PHY_TYPE_LOW_25GBASE_SR);
        d.caps = ICE_AQC_PHY_EN_TX_LINK_PAUSE | ICE_AQC_PHY_EN_RX_LINK_PAUSE |
                 ICE_AQC_PHY_EN_LINK | ICE_AQC_PHY_EN_AUTO_FEC;
        d.link_fec_options = ICE_AQC_PHY_FEC_DEFAULT;
        d.module_type[0] = E810_MOD_TYPE_BYTE0;
    }
    memcpy(d.phy_id_oui, intel_oui, sizeof(d.phy_id_oui));
    cmd->resp_len = MIN(cmd->buf_len, sizeof(d));
    memcpy(cmd->buf, &d, cmd->resp_len);
    return ICE_AQ_RC_OK;
}

/* 0x0601 set_phy_cfg (struct ice_aqc_set_phy_cfg_data, 24 bytes) */
uint16_t e810_aq_set_phy_cfg(E810Core *core, E810AqCmd *cmd)
{
    bool was_up = e810_link_is_up(core);
    const struct ice_aqc_set_phy_cfg_data *d = (void *)cmd->buf;

    if (!e810_aq_need_buf(cmd, sizeof(*d))) {
        return ICE_AQ_RC_EINVAL;
    }
    core->link.phy_type_low = le64_to_cpu(d->phy_type_low);
    core->link.phy_type_high = le64_to_cpu(d->phy_type_high);
    core->link.phy_caps = d->caps & ICE_AQ_PHY_ENA_VALID_MASK;
    core->link.low_power_ctrl_an = d->low_power_ctrl_an;
    core->link.eee_cap = le16_to_cpu(d->eee_cap);
    core->link.eeer = le16_to_cpu(d->eeer_value);
    core->link.link_fec_opt = d->link_fec_opt;
    core->link.module_compliance_enforcement =
        d->module_compliance_enforcement;
    core->link.phy_cfg_set = true;
    trace_e810_phy_cfg(core->link.phy_type_low, core->link.phy_caps);
    if (!(core->link.phy_type_low & ICE_PHY_TYPE_LOW_25GBASE_SR)) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: PHY configured without the "
                      "port's only type 25GBASE-SR: link stays down\n");
        core->link.phy_caps &= ~ICE_AQC_PHY_EN_LINK;
    }
    if (was_up != e810_link_is_up(core)) {
        e810_link_event(core);
    }
    return ICE_AQ_RC_OK;
}

/* 0x0603 set_mac_cfg */
uint16_t e810_aq_set_mac_cfg(E810Core *core, E810AqCmd *cmd)
{
    uint16_t mfs = le16_to_cpu(cmd->params.set_mac_cfg.max_frame_size);

    if (mfs < 64 || mfs > ICE_AQ_SET_MAC_FRAME_SIZE_MAX) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: max frame size %u\n", mfs);
        return ICE_AQ_RC_EINVAL;
    }
    core->link.max_frame_size = mfs;
    return ICE_AQ_RC_OK;
}

/* 0x0605 restart_an: LINK_ENABLE in cmd_flags turns the link on, else off */
uint16_t e810_aq_restart_an(E810Core *core, E810AqCmd *cmd)
{
    bool was_up = e810_link_is_up(core);

    if (cmd->params.restart_an.cmd_flags & ICE_AQC_RESTART_AN_LINK_ENABLE) {
        core->link.phy_caps |= ICE_AQC_PHY_EN_LINK;
    } else {
        core->link.phy_caps &= ~ICE_AQC_PHY_EN_LINK;
    }
    if (was_up != e810_link_is_up(core)) {
        e810_link_event(core);
    }
    return ICE_AQ_RC_OK;
}

/* 0x0607 get_link_status */
uint16_t e810_aq_get_link_status(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_get_link_status *p = &cmd->params.get_link_status;
    uint16_t lse = le16_to_cpu(p->cmd_flags) & ICE_AQ_LSE_M;
    struct ice_aqc_get_link_status_data data;
    uint16_t len;

    if (lse == ICE_AQ_LSE_ENA) {
        core->link.lse_enabled = true;
    } else if (lse == ICE_AQ_LSE_DIS) {
        core->link.lse_enabled = false;
    }
    p->cmd_flags = cpu_to_le16(core->link.lse_enabled ?
                               ICE_AQ_LSE_IS_ENABLED : 0);
    trace_e810_link_status(e810_link_is_up(core), core->link.lse_enabled);
    if (!cmd->buf) {
        return ICE_AQ_RC_OK;
    }
    e810_link_fill(core, &data);
    len = MIN(cmd->buf_len, sizeof(data));
    memcpy(cmd->buf, &data, len);
    cmd->resp_len = len;
    return ICE_AQ_RC_OK;
}

/* 0x06EA get_port_options: a single option, one 25G PMD, active */
uint16_t e810_aq_get_port_options(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_get_port_options *p = &cmd->params.get_port_options;
    struct ice_aqc_get_port_options_elem *e = (void *)cmd->buf;

    if (!e810_aq_need_buf(cmd, sizeof(*e))) {
        return ICE_AQ_RC_EINVAL;
    }
    memset(cmd->buf, 0, cmd->buf_len);
    e->pmd = 1;                         /* one PMD */
    e->max_lane_speed = ICE_AQC_PORT_OPT_MAX_LANE_25G;
    p->port_options_count = 1;
    p->port_options = ICE_AQC_PORT_OPT_VALID | 0;   /* active: option 0 */
    p->pending_port_option_status = 0;
    return ICE_AQ_RC_OK;
}

/* 0x0613 set_event_mask: set bits mask the corresponding events */
uint16_t e810_aq_set_event_mask(E810Core *core, E810AqCmd *cmd)
{
    core->link.event_mask = le16_to_cpu(cmd->params.set_event_mask.event_mask);
    return ICE_AQ_RC_OK;
}

/*
 * 0x0620 set_mac_lb: ICE_AQ_MAC_LB_EN turns MAC loopback on, its absence
 * off (ice_aq_set_mac_loopback(), the ethtool loopback self-test).  While
 * on, the MAC hands every transmitted frame back to the receive side
 * (e810_rx_loopback()) instead of the wire, and frames from the wire are
 * not received.  OSC_CLK only picks the loopback's clock: accepted.
 * Other bits are EINVAL.
 */
uint16_t e810_aq_set_mac_lb(E810Core *core, E810AqCmd *cmd)
{
    uint8_t mode = cmd->params.set_mac_lb.lb_mode;

    if (mode & ~(ICE_AQ_MAC_LB_EN | ICE_AQ_MAC_LB_OSC_CLK)) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: MAC loopback mode 0x%x has "
                      "reserved bits\n", mode);
        trace_e810_mac_loopback(mode, core->link.mac_loopback);
        return ICE_AQ_RC_EINVAL;
    }
    core->link.mac_loopback = mode & ICE_AQ_MAC_LB_EN;
    trace_e810_mac_loopback(mode, core->link.mac_loopback);
    return ICE_AQ_RC_OK;
}

void e810_link_reset(E810Core *core)
{
    memset(&core->link, 0, sizeof(core->link));
    core->link.max_frame_size = ICE_AQ_SET_MAC_FRAME_SIZE_MAX;
    /* firmware brings the link up from its NVM defaults */
    core->link.phy_type_low = ICE_PHY_TYPE_LOW_25GBASE_SR;
    core->link.phy_caps = ICE_AQC_PHY_EN_TX_LINK_PAUSE |
                          ICE_AQC_PHY_EN_RX_LINK_PAUSE |
                          ICE_AQC_PHY_EN_LINK | ICE_AQC_PHY_EN_AUTO_FEC;
    core->link.link_fec_opt = ICE_AQC_PHY_FEC_DEFAULT;
}

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

/* struct ice_aqc_get_phy_caps / ice_aqc_get_link_status constants */
#define ICE_AQC_REPORT_MODE_M           (7 << 1)
#define ICE_AQC_REPORT_TOPO_CAP_NO_MEDIA 0
#define ICE_AQC_REPORT_TOPO_CAP_MEDIA   (1 << 1)
#define ICE_AQC_REPORT_ACTIVE_CFG       (2 << 1)
#define ICE_AQC_REPORT_DFLT_CFG         (4 << 1)

#define ICE_PHY_TYPE_LOW_25GBASE_SR     (1ULL << 23)
#define ICE_AQC_PHY_EN_TX_LINK_PAUSE    0x01
#define ICE_AQC_PHY_EN_RX_LINK_PAUSE    0x02
#define ICE_AQC_PHY_EN_LINK             0x08
#define ICE_AQC_PHY_EN_AUTO_FEC         0x80
#define ICE_AQC_PHY_FEC_DEFAULT         0xCC  /* RS528/KR req, CL91/CL74 en */
#define ICE_AQ_PHY_ENA_VALID_MASK       0xEF

#define ICE_AQ_LSE_M                    0x3
#define ICE_AQ_LSE_DIS                  0x2
#define ICE_AQ_LSE_ENA                  0x3
#define ICE_AQ_LSE_IS_ENABLED           0x1

#define ICE_AQ_LINK_UP                  0x01
#define ICE_AQ_MEDIA_AVAILABLE          0x40
#define ICE_AQ_SIGNAL_DETECT            0x80
#define ICE_AQ_AN_COMPLETED             0x01
#define ICE_AQ_FEC_EN                   0x08
#define ICE_AQ_LINK_PAUSE_TX            0x20
#define ICE_AQ_LINK_PAUSE_RX            0x40
#define ICE_AQ_QUALIFIED_MODULE         0x80
#define ICE_AQ_LINK_25G_RS_528_FEC_EN   0x02
#define ICE_AQ_LINK_SPEED_25GB          (1 << 7)
#define ICE_AQ_LINK_EVENT_UPDOWN        (1 << 1)

#define ICE_AQ_SET_MAC_FRAME_SIZE_MAX   9728
#define ICE_AQC_MAN_MAC_LAN_ADDR_VALID  (1 << 4)
#define ICE_AQC_MAN_MAC_ADDR_TYPE_LAN   0

#define E810_PHY_CAPS_SIZE              560
#define E810_LINK_DATA_V1               32
#define E810_LINK_DATA_V2               56

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

static void e810_link_fill(E810Core *core, uint8_t *d)
{
    bool up = e810_link_is_up(core);

    memset(d, 0, E810_LINK_DATA_V2);
    d[2] = ICE_AQ_MEDIA_AVAILABLE | (up ? ICE_AQ_LINK_UP | ICE_AQ_SIGNAL_DETECT
                                        : 0);
    d[3] = ICE_AQ_QUALIFIED_MODULE;
    if (up) {
        d[3] |= ICE_AQ_AN_COMPLETED | ICE_AQ_FEC_EN;
        /* pause as configured (ICE_AQC_PHY_EN_TX/RX_LINK_PAUSE) */
        d[3] |= (core->link.phy_caps & ICE_AQC_PHY_EN_TX_LINK_PAUSE ?
                 ICE_AQ_LINK_PAUSE_TX : 0) |
                (core->link.phy_caps & ICE_AQC_PHY_EN_RX_LINK_PAUSE ?
                 ICE_AQ_LINK_PAUSE_RX : 0);
        d[8] = ICE_AQ_LINK_25G_RS_528_FEC_EN;
    }
    e810_st16(d + 6, core->link.max_frame_size);
    e810_st16(d + 10, ICE_AQ_LINK_SPEED_25GB);
    e810_st64(d + 16, ICE_PHY_TYPE_LOW_25GBASE_SR);
}

/* Post a link-status event if the driver asked for them */
static void e810_link_event(E810Core *core)
{
    uint8_t params[8] = { 0 };
    uint8_t data[E810_LINK_DATA_V2];

    if (!core->link.lse_enabled ||
        (core->link.event_mask & ICE_AQ_LINK_EVENT_UPDOWN)) {
        trace_e810_link_event_suppressed(core->link.lse_enabled,
                                         core->link.event_mask);
        return;
    }
    e810_link_fill(core, data);
    e810_st16(params + 2, ICE_AQ_LSE_IS_ENABLED);
    trace_e810_link_event(e810_link_is_up(core));
    e810_arq_post(core, 0x0607, 0, params, data, E810_LINK_DATA_V1);
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
    if (!e810_aq_need_buf(cmd, 8)) {
        return ICE_AQ_RC_EINVAL;
    }
    memset(cmd->buf, 0, 8);
    cmd->buf[0] = 0;                                /* lport_num */
    cmd->buf[1] = ICE_AQC_MAN_MAC_ADDR_TYPE_LAN;
    memcpy(cmd->buf + 2, core->conf->macaddr.a, 6);
    e810_st16(cmd->params + 0, ICE_AQC_MAN_MAC_LAN_ADDR_VALID);
    cmd->params[4] = 1;                             /* num_addr */
    cmd->resp_len = 8;
    return ICE_AQ_RC_OK;
}

/* 0x0108 manage_mac_write: a locally administered address; accepted */
uint16_t e810_aq_manage_mac_write(E810Core *core, E810AqCmd *cmd)
{
    trace_e810_mac_write(cmd->params[2], cmd->params[3], cmd->params[4],
                         cmd->params[5], cmd->params[6], cmd->params[7]);
    return ICE_AQ_RC_OK;
}

/* 0x0600 get_phy_caps (struct ice_aqc_get_phy_caps_data) */
uint16_t e810_aq_get_phy_caps(E810Core *core, E810AqCmd *cmd)
{
    uint16_t mode = e810_le16(cmd->params + 2) & ICE_AQC_REPORT_MODE_M;
    uint8_t *d = cmd->buf;

    if (!e810_aq_need_buf(cmd, 48)) {
        return ICE_AQ_RC_EINVAL;
    }
    memset(d, 0, MIN(cmd->buf_len, E810_PHY_CAPS_SIZE));
    trace_e810_phy_caps(mode);
    if (mode == ICE_AQC_REPORT_ACTIVE_CFG) {
        e810_st64(d + 0, core->link.phy_type_low);
        e810_st64(d + 8, core->link.phy_type_high);
        d[16] = core->link.phy_caps;
        d[17] = core->link.low_power_ctrl_an;
        e810_st16(d + 18, core->link.eee_cap);
        e810_st16(d + 20, core->link.eeer);
        d[34] = core->link.link_fec_opt;
        d[35] = core->link.module_compliance_enforcement;
    } else {
        /* topology/NVM/default capabilities: what the port can do */
        e810_st64(d + 0, ICE_PHY_TYPE_LOW_25GBASE_SR);
        d[16] = ICE_AQC_PHY_EN_TX_LINK_PAUSE | ICE_AQC_PHY_EN_RX_LINK_PAUSE |
                ICE_AQC_PHY_EN_LINK | ICE_AQC_PHY_EN_AUTO_FEC;
        d[34] = ICE_AQC_PHY_FEC_DEFAULT;
        d[37] = 0x10;                   /* module_type: SFP+ */
    }
    memcpy(d + 22, "\x00\x1b\x21\x00", 4);  /* phy_id_oui: Intel */
    cmd->resp_len = MIN(cmd->buf_len, E810_PHY_CAPS_SIZE);
    return ICE_AQ_RC_OK;
}

/* 0x0601 set_phy_cfg (struct ice_aqc_set_phy_cfg_data, 24 bytes) */
uint16_t e810_aq_set_phy_cfg(E810Core *core, E810AqCmd *cmd)
{
    bool was_up = e810_link_is_up(core);
    const uint8_t *d = cmd->buf;

    if (!e810_aq_need_buf(cmd, 24)) {
        return ICE_AQ_RC_EINVAL;
    }
    core->link.phy_type_low = e810_le64(d + 0);
    core->link.phy_type_high = e810_le64(d + 8);
    core->link.phy_caps = d[16] & ICE_AQ_PHY_ENA_VALID_MASK;
    core->link.low_power_ctrl_an = d[17];
    core->link.eee_cap = e810_le16(d + 18);
    core->link.eeer = e810_le16(d + 20);
    core->link.link_fec_opt = d[22];
    core->link.module_compliance_enforcement = d[23];
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
    uint16_t mfs = e810_le16(cmd->params);

    if (mfs < 64 || mfs > ICE_AQ_SET_MAC_FRAME_SIZE_MAX) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: max frame size %u\n", mfs);
        return ICE_AQ_RC_EINVAL;
    }
    core->link.max_frame_size = mfs;
    return ICE_AQ_RC_OK;
}

/* 0x0605 restart_an: bit 1 of cmd_flags turns the link on, else off */
uint16_t e810_aq_restart_an(E810Core *core, E810AqCmd *cmd)
{
    bool was_up = e810_link_is_up(core);

    if (cmd->params[2] & 0x4) {         /* ICE_AQC_RESTART_AN_LINK_ENABLE */
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
    uint16_t lse = e810_le16(cmd->params + 2) & ICE_AQ_LSE_M;
    uint8_t data[E810_LINK_DATA_V2];
    uint16_t len;

    if (lse == ICE_AQ_LSE_ENA) {
        core->link.lse_enabled = true;
    } else if (lse == ICE_AQ_LSE_DIS) {
        core->link.lse_enabled = false;
    }
    e810_st16(cmd->params + 2,
              core->link.lse_enabled ? ICE_AQ_LSE_IS_ENABLED : 0);
    trace_e810_link_status(e810_link_is_up(core), core->link.lse_enabled);
    if (!cmd->buf) {
        return ICE_AQ_RC_OK;
    }
    e810_link_fill(core, data);
    len = MIN(cmd->buf_len, E810_LINK_DATA_V2);
    memcpy(cmd->buf, data, len);
    cmd->resp_len = len;
    return ICE_AQ_RC_OK;
}

/* 0x06EA get_port_options: a single option, one 25G PMD, active */
uint16_t e810_aq_get_port_options(E810Core *core, E810AqCmd *cmd)
{
    if (!e810_aq_need_buf(cmd, 8)) {
        return ICE_AQ_RC_EINVAL;
    }
    memset(cmd->buf, 0, cmd->buf_len);
    cmd->buf[0] = 1;                    /* pmd count */
    cmd->buf[1] = 5;                    /* ICE_AQC_PORT_OPT_MAX_LANE_25G */
    cmd->params[2] = 1;                 /* port_options_count */
    cmd->params[4] = 0x80 | 0;          /* ICE_AQC_PORT_OPT_VALID, idx 0 */
    cmd->params[5] = 0;                 /* no pending option */
    return ICE_AQ_RC_OK;
}

/* 0x0613 set_event_mask: set bits mask the corresponding events */
uint16_t e810_aq_set_event_mask(E810Core *core, E810AqCmd *cmd)
{
    core->link.event_mask = e810_le16(cmd->params + 8);
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

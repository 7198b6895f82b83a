/*
 * QEMU Intel E810 ("ice") Ethernet controller: DCB and the firmware LLDP
 * agent
 *
 * The port reports the DCB capability (maximum 8 TCs, TC0 active) and the
 * firmware runs the LLDP/DCBX agent, the way an E810 leaves the factory.
 * The agent has no peer: no LLDPDU is ever sent to or taken from the
 * wire.  What the driver reads at probe and rebuild (ice_init_dcb(),
 * ice_get_dcb_cfg(), ice_dcb_init_cfg()):
 *  - PRTDCB_GENS.DCBX_STATUS: IN_PROGRESS (the agent runs, no peer has
 *    answered), e810_regs.c;
 *  - 0x0A07 get CEE DCBX config: ENOENT (no CEE peer), so the driver takes
 *    the IEEE path;
 *  - 0x0A00 get LLDP MIB: the local MIB is an LLDPDU (Ethernet header,
 *    chassis/port id, TTL, IEEE 802.1Qaz ETS configuration and
 *    recommendation, PFC configuration, end) with the firmware defaults:
 *    willing, every priority on TC0, TC0 100% ETS, PFC capable of 8 TCs
 *    with none enabled; the remote MIB is ENOENT (no peer);
 *  - 0x0A01 MIB change events: enable/disable stored; no event is posted
 *    since nothing ever changes;
 *  - 0x040E query port ETS: TC0 valid, its node the scheduler's TC0.
 * The software-LLDP commands (agent stop/start 0x0A05/0x0A06, set local
 * MIB 0x0A08, PFC mode 0x0302/0x0303, LLDP filter 0x0A0A) stay
 * unmodelled: ENOSYS.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "net/eth.h"
#include "e810_core.h"
#include "e810_adminq.h"
#include "trace.h"

/* LLDP TLVs (IEEE 802.1AB) and the 802.1Qaz ones ice_dcb.c parses */
#define LLDP_TLV_END                0
#define LLDP_TLV_CHASSIS_ID         1
#define LLDP_TLV_PORT_ID            2
#define LLDP_TLV_TTL                3
#define LLDP_TLV_ORG                127
#define LLDP_CHASSIS_MAC            4
#define LLDP_PORT_MAC               3
#define LLDP_TTL_S                  120
#define IEEE_8021QAZ_OUI            0x0080C2
#define IEEE_SUBTYPE_ETS_CFG        9
#define IEEE_SUBTYPE_ETS_REC        10
#define IEEE_SUBTYPE_PFC_CFG        11
#define IEEE_ETS_WILLING            0x80
#define IEEE_TSA_ETS                2
#define IEEE_PFC_WILLING            0x80
#define E810_DCB_MAX_TC             8
#define E810_LLDPDU_MAX             1500        /* ICE_LLDPDU_SIZE */
#define E810_ETH_P_LLDP             0x88CC
#define E810_INVAL_TEID             0xFFFFFFFF  /* ICE_INVAL_TEID */

static const uint8_t lldp_nearest_bridge[ETH_ALEN] = {
    0x01, 0x80, 0xC2, 0x00, 0x00, 0x0E
};

static size_t e810_tlv(uint8_t *p, unsigned type, const void *val,
                       size_t len)
{
    stw_be_p(p, (type << 9) | len);
    if (len) {
        memcpy(p + 2, val, len);        /* the END TLV has no value */
    }
    return 2 + len;
}

/* An IEEE 802.1Qaz organisational TLV: OUI, subtype, then 'len' bytes */
static size_t e810_tlv_8021qaz(uint8_t *p, uint8_t subtype,
                               const uint8_t *val, size_t len)
{
    uint8_t b[32];

    assert(len + 4 <= sizeof(b));
    stl_be_p(b, (IEEE_8021QAZ_OUI << 8) | subtype);
    memcpy(b + 4, val, len);
    return e810_tlv(p, LLDP_TLV_ORG, b, len + 4);
}

/* The local MIB: what the agent would send, with the firmware defaults */
static size_t e810_lldp_local_mib(E810Core *core, uint8_t *p)
{
    const uint8_t *mac = core->conf->macaddr.a;
    uint8_t id[1 + ETH_ALEN], ttl[2], ets[1 + 4 + 8 + 8], pfc[2];
    size_t n = 0;

    memcpy(p, lldp_nearest_bridge, ETH_ALEN);
    memcpy(p + ETH_ALEN, mac, ETH_ALEN);
    stw_be_p(p + 2 * ETH_ALEN, E810_ETH_P_LLDP);
    n = ETH_HLEN;

    id[0] = LLDP_CHASSIS_MAC;
    memcpy(id + 1, mac, ETH_ALEN);
    n += e810_tlv(p + n, LLDP_TLV_CHASSIS_ID, id, sizeof(id));
    id[0] = LLDP_PORT_MAC;
    n += e810_tlv(p + n, LLDP_TLV_PORT_ID, id, sizeof(id));
    stw_be_p(ttl, LLDP_TTL_S);
    n += e810_tlv(p + n, LLDP_TLV_TTL, ttl, sizeof(ttl));

    /*
     * ETS: willing, max TCs 8 (encoded 0); priority table all TC0; TC0
     * gets 100% of the bandwidth with the ETS algorithm, the rest strict
     */
    memset(ets, 0, sizeof(ets));
    ets[0] = IEEE_ETS_WILLING;
    ets[1 + 4] = 100;
    ets[1 + 4 + 8] = IEEE_TSA_ETS;
    n += e810_tlv_8021qaz(p + n, IEEE_SUBTYPE_ETS_CFG, ets, sizeof(ets));
    ets[0] = 0;                         /* reserved in the recommendation */
    n += e810_tlv_8021qaz(p + n, IEEE_SUBTYPE_ETS_REC, ets, sizeof(ets));
    /* PFC: willing, capable of 8 TCs, none enabled */
    pfc[0] = IEEE_PFC_WILLING | E810_DCB_MAX_TC;
    pfc[1] = 0;
    n += e810_tlv_8021qaz(p + n, IEEE_SUBTYPE_PFC_CFG, pfc, sizeof(pfc));
    n += e810_tlv(p + n, LLDP_TLV_END, NULL, 0);
    return n;
}

/* 0x0A00 get LLDP MIB (struct ice_aqc_lldp_get_mib) */
uint16_t e810_aq_lldp_get_mib(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_lldp_get_mib *p = &cmd->params.lldp_get_mib;
    uint8_t mib = p->type & ICE_AQ_LLDP_MIB_TYPE_M;
    uint8_t bridge = (p->type & ICE_AQ_LLDP_BRID_TYPE_M) >>
                     ICE_AQ_LLDP_BRID_TYPE_S;
    uint8_t pdu[E810_LLDPDU_MAX];
    size_t len;

    trace_e810_lldp_get_mib(mib, bridge);
    if (mib > ICE_AQ_LLDP_MIB_LOCAL_AND_REMOTE ||
        bridge > ICE_AQ_LLDP_BRID_TYPE_NON_TPMR || !cmd->buf) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: LLDP get MIB type 0x%x%s\n",
                      p->type, cmd->buf ? "" : " without a buffer");
        return ICE_AQ_RC_EINVAL;
    }
    if (mib == ICE_AQ_LLDP_MIB_REMOTE ||
        bridge != ICE_AQ_LLDP_BRID_TYPE_NEAREST_BRID) {
        /* no peer; the agent only runs for the nearest bridge */
        return ICE_AQ_RC_ENOENT;
    }
    len = e810_lldp_local_mib(core, pdu);
    if (len > cmd->buf_len) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: LLDP MIB of %zu bytes, "
                      "buffer %u\n", len, cmd->buf_len);
        return ICE_AQ_RC_ENOMEM;
    }
    memcpy(cmd->buf, pdu, len);
    cmd->resp_len = len;
    p->local_len = cpu_to_le16(len);
    p->remote_len = 0;
    return ICE_AQ_RC_OK;
}

/* 0x0A01 LLDP MIB change events: UPDATE_DIS (bit 0) off enables them */
uint16_t e810_aq_lldp_set_mib_change(E810Core *core, E810AqCmd *cmd)
{
    uint8_t c = cmd->params.lldp_set_event.command;

    if (c & ~(ICE_AQ_LLDP_MIB_UPDATE_DIS | ICE_AQ_LLDP_MIB_PENDING_M)) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: LLDP MIB change command "
                      "0x%x\n", c);
        return ICE_AQ_RC_EINVAL;
    }
    core->lldp_mib_change = !(c & ICE_AQ_LLDP_MIB_UPDATE_DIS);
    trace_e810_lldp_mib_change(core->lldp_mib_change);
    return ICE_AQ_RC_OK;
}

/* 0x0A07 get CEE DCBX operational config: no CEE peer */
uint16_t e810_aq_get_cee_dcb_cfg(E810Core *core, E810AqCmd *cmd)
{
    trace_e810_aq_not_supported(cmd->opcode);
    return ICE_AQ_RC_ENOENT;
}

/* 0x040E query port ETS: TC0 only, on the scheduler's TC0 node */
uint16_t e810_aq_query_port_ets(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_port_ets_elem *e = (void *)cmd->buf;
    uint32_t teid = le32_to_cpu(cmd->params.port_ets.port_teid);
    E810SchedNode *root = e810_sched_root(core);
    E810SchedNode *tc0 = e810_sched_tc0(core);

    if (!e810_aq_need_buf(cmd, sizeof(*e))) {
        return ICE_AQ_RC_EINVAL;
    }
    if (!root || !tc0 || teid != root->teid) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: query port ETS of TEID 0x%x, "
                      "not the port's root\n", teid);
        return ICE_AQ_RC_EINVAL;
    }
    memset(e, 0, sizeof(*e));
    e->tc_valid_bits = 1;
    e->tc_bw_share[0] = 100;
    /* TCs without a node: ICE_INVAL_TEID (ice_update_port_tc_tree_cfg()) */
    for (int i = 0; i < E810_DCB_MAX_TC; i++) {
        e->tc_node_teid[i] = cpu_to_le32(i ? E810_INVAL_TEID : tc0->teid);
    }
    cmd->resp_len = sizeof(*e);
    return ICE_AQ_RC_OK;
}

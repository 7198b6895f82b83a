/*
 * QEMU Intel E810 ("ice") Ethernet controller: LAN Rx queues
 *
 * The driver programs a queue through QRXFLXP_CNTXT (RXDID), the eight
 * QRX_CONTEXT dwords (the RLAN context, ice_rlan_ctx_info[] in
 * ice_common.c) and QRX_TAIL, then enables it with the QRX_CTRL
 * handshake: QENA_REQ (bit 0) is mirrored into QENA_STAT (bit 2), which
 * the driver polls (ice_pf_rxq_wait()).  Enabling latches the context's
 * head as the device's internal head.
 *
 * Receive (ice_clean_rx_irq() / ice_alloc_rx_bufs() are the spec): the
 * device owns the descriptors from its head up to QRX_TAIL - 1.  A frame
 * is written into consecutive buffers of dbuf x 128 bytes each (read
 * format: pkt_addr at byte 0), and every descriptor is written back in
 * the 32-byte flex format (ice_32b_rx_flex_desc_nic, RXDID 2): rxdid,
 * UMBCAST, ptype, the bytes in *this* buffer, status_error0 with DD, EOF
 * on the last buffer, L3L4P/IPE/L4E from QEMU's checksum check and
 * RSS_VALID with the hash when RSS picked the queue.  Then the queue's
 * QINT_RQCTL cause is raised.
 *
 * A frame for a queue without enough free descriptors is dropped and
 * counted (PRTRPB_RDPC, read by the driver as rx_missed_errors); the
 * netdev is only offered frames while some enabled queue has room for
 * the largest frame it accepts (e810_rx_can_receive), and a QRX_TAIL or
 * QRX_CTRL write flushes what the backend queued meanwhile -- so with
 * one queue (Safe Mode) nothing from the netdev is ever dropped.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "qemu/iov.h"
#include "qapi/error.h"
#include "hw/pci/pci.h"
#include "net/eth.h"
#include "net/net.h"
#include "hw/net/net_rx_pkt.h"
#include "e810_core.h"
#include "e810_regs.h"
#include "trace.h"

#define E810_RX_DESC_SIZE       32
#define E810_RX_MIN_FRAME       60      /* short frames are padded */

/* ice_32b_rx_flex_desc_nic write-back (ice_lan_tx_rx.h) */
#define RX_WB_RXDID             0
#define RX_WB_UMBCAST           1
#define RX_WB_PTYPE             2
#define RX_WB_PKT_LEN           4
#define RX_WB_STATUS0           8
#define RX_WB_L2TAG1            10
#define RX_WB_RSS_HASH          12
#define RX_STATUS0_DD           E810_BIT(0)
#define RX_STATUS0_EOF          E810_BIT(1)
#define RX_STATUS0_L3L4P        E810_BIT(3)
#define RX_STATUS0_XSUM_IPE     E810_BIT(4)
#define RX_STATUS0_XSUM_L4E     E810_BIT(5)
#define RX_STATUS0_RXE          E810_BIT(10)
#define RX_STATUS0_RSS_VALID    E810_BIT(12)
#define RX_UMBCAST_S            6       /* 0 unicast, 1 multicast, 2 bcast */
#define RX_PKT_LEN_M            0x3FFF

#define QRXFLXP_CNTXT_RXDID_IDX_M   0x3F
#define E810_RXDID_FLEX_NIC         2
#define E810_RXDID_FLEX_NIC_2       6

/*
 * Hardware packet types, as libie_rx_pt_lut[] (libie/rx.c) decodes them:
 * 1 MAC_PAY2, 11 MAC_ARP, 22..28 IPv4 frag/pay/UDP/TCP/SCTP/ICMP,
 * 88..94 the same for IPv6.
 */
#define PTYPE_L2                1
#define PTYPE_ARP               11
#define PTYPE_IPV4_FRAG         22
#define PTYPE_IPV4_PAY          23
#define PTYPE_IPV4_UDP          24
#define PTYPE_IPV4_TCP          26
#define PTYPE_IPV4_SCTP         27
#define PTYPE_IPV4_ICMP         28
#define PTYPE_IPV6_OFFSET       (88 - 22)
#define E810_IPPROTO_ICMP       1
#define E810_IPPROTO_ICMPV6     58

/* ------------------------------------------------------------------ */
/* the RLAN context                                                    */

void e810_rxq_ctx(E810Core *core, uint32_t q, E810RxCtx *c)
{
    uint8_t raw[E810_QRX_CONTEXT_DWORDS * 4];

    for (int i = 0; i < E810_QRX_CONTEXT_DWORDS; i++) {
        stl_le_p(raw + 4 * i, core->qrx_context[i][q]);
    }
    c->head = e810_ctx_bits(raw, sizeof(raw), 0, 13);
    c->base = e810_ctx_bits(raw, sizeof(raw), 32, 57) << 7;
    c->qlen = e810_ctx_bits(raw, sizeof(raw), 89, 13);
    c->dbuf = e810_ctx_bits(raw, sizeof(raw), 102, 7) << 7;
    c->hbuf = e810_ctx_bits(raw, sizeof(raw), 109, 5) << 6;
    c->dtype = e810_ctx_bits(raw, sizeof(raw), 114, 2);
    c->dsize = e810_ctx_bits(raw, sizeof(raw), 116, 1);
    c->crcstrip = e810_ctx_bits(raw, sizeof(raw), 117, 1);
    c->l2tsel = e810_ctx_bits(raw, sizeof(raw), 119, 1);
    c->rxmax = e810_ctx_bits(raw, sizeof(raw), 174, 14);
}

/* Is the context usable?  Says why not (once per enable) if it is not. */
static bool e810_rxq_ctx_ok(E810Core *core, uint32_t q, const E810RxCtx *c)
{
    const char *why = NULL;

    if (c->qlen < 2) {
        why = "qlen < 2";
    } else if (!c->dbuf) {
        why = "dbuf 0";
    } else if (!c->dsize) {
        why = "16-byte descriptors (dsize 0) are not modelled";
    } else if (c->dtype) {
        why = "header split (dtype != 0) is not modelled";
    }
    if (!why) {
        return true;
    }
    if (!core->rxq_ctx_warned[q]) {
        core->rxq_ctx_warned[q] = 1;
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: Rx queue %u context unusable: %s\n", q, why);
    }
    return false;
}

static bool e810_rxq_live(E810Core *core, uint32_t q)
{
    return q < E810_NUM_QUEUES &&
           (core->qrx_ctrl[q] & QRX_CTRL_QENA_STAT_M);
}

/* Descriptors the guest has given the device on queue q */
static uint32_t e810_rxq_free(E810Core *core, uint32_t q, const E810RxCtx *c)
{
    uint32_t head = core->rxq_head[q], tail = core->qrx_tail[q];

    if (head >= c->qlen || tail >= c->qlen) {
        return 0;
    }
    return (tail + c->qlen - head) % c->qlen;
}

static uint32_t e810_rxq_max_frame(const E810RxCtx *c)
{
    return MIN(c->rxmax ? c->rxmax : E810_RX_MAX_FRAME, E810_RX_MAX_FRAME);
}

static uint32_t e810_rxq_descs_for(const E810RxCtx *c, uint32_t len)
{
    return DIV_ROUND_UP(MAX(len, 1), c->dbuf);
}

/* ------------------------------------------------------------------ */
/* register side                                                       */

void e810_rxq_ctrl_write(E810Core *core, uint32_t q, uint32_t val)
{
    uint32_t v = val & ~QRX_CTRL_QENA_STAT_M;
    bool was = core->qrx_ctrl[q] & QRX_CTRL_QENA_STAT_M;

    if (val & QRX_CTRL_QENA_REQ_M) {
        v |= QRX_CTRL_QENA_STAT_M;
    }
    core->qrx_ctrl[q] = v;
    if (was != !!(v & QRX_CTRL_QENA_STAT_M)) {
        trace_e810_rxq_enable(q, !was);
        if (!was) {
            E810RxCtx c;

            e810_rxq_ctx(core, q, &c);
            core->rxq_head[q] = c.qlen ? c.head % c.qlen : 0;
            core->rxq_ctx_warned[q] = 0;
            trace_e810_rxq_ctx(q, c.base, c.qlen, c.dbuf, c.rxmax,
                               c.dsize, c.crcstrip,
                               core->qrxflxp_cntxt[q] &
                               QRXFLXP_CNTXT_RXDID_IDX_M);
            e810_rxq_ctx_ok(core, q, &c);
            qemu_flush_queued_packets(qemu_get_queue(core->nic));
        }
    }
}

void e810_rxq_tail_write(E810Core *core, uint32_t q, uint32_t val)
{
    uint32_t tail = val & QRX_TAIL_TAIL_M;
    E810RxCtx c;

    if (q >= E810_NUM_QUEUES) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: QRX_TAIL(%u): PF owns %u queues\n",
                      q, E810_NUM_QUEUES);
        return;
    }
    e810_rxq_ctx(core, q, &c);
    if (c.qlen && tail >= c.qlen) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: QRX_TAIL(%u) = %u beyond the ring of %u\n",
                      q, tail, c.qlen);
        return;
    }
    core->qrx_tail[q] = tail;
    trace_e810_rxq_tail(q, tail, core->rxq_head[q]);
    if (e810_rxq_live(core, q)) {
        qemu_flush_queued_packets(qemu_get_queue(core->nic));
    }
}

/* ------------------------------------------------------------------ */
/* receive                                                             */

bool e810_rx_can_receive(E810Core *core)
{
    PCIDevice *d = core->owner;

    if (!(d->config[PCI_COMMAND] & PCI_COMMAND_MASTER)) {
        return false;
    }
    for (uint32_t q = 0; q < E810_NUM_QUEUES; q++) {
        E810RxCtx c;

        if (!e810_rxq_live(core, q)) {
            continue;
        }
        e810_rxq_ctx(core, q, &c);
        if (c.qlen >= 2 && c.dbuf &&
            e810_rxq_free(core, q, &c) >=
            e810_rxq_descs_for(&c, e810_rxq_max_frame(&c) + 4)) {
            return true;
        }
    }
    trace_e810_rx_cannot_receive();
    return false;
}

static uint16_t e810_rx_ptype(struct NetRxPkt *pkt, const uint8_t *frame,
                              size_t len)
{
    bool v4, v6;
    EthL4HdrProto l4;
    uint16_t pt;

    net_rx_pkt_get_protocols(pkt, &v4, &v6, &l4);
    if (!v4 && !v6) {
        uint16_t et = len >= ETH_HLEN ? lduw_be_p(frame + 12) : 0;

        if (et == ETH_P_VLAN && len >= ETH_HLEN + 4) {
            et = lduw_be_p(frame + 16);
        }
        return et == ETH_P_ARP ? PTYPE_ARP : PTYPE_L2;
    }
    if ((v4 && net_rx_pkt_get_ip4_info(pkt)->fragment) ||
        (v6 && net_rx_pkt_get_ip6_info(pkt)->fragment)) {
        pt = PTYPE_IPV4_FRAG;
    } else {
        switch (l4) {
        case ETH_L4_HDR_PROTO_UDP:
            pt = PTYPE_IPV4_UDP;
            break;
        case ETH_L4_HDR_PROTO_TCP:
            pt = PTYPE_IPV4_TCP;
            break;
        case ETH_L4_HDR_PROTO_SCTP:
            pt = PTYPE_IPV4_SCTP;
            break;
        default:
            pt = PTYPE_IPV4_PAY;
            if (v4 && net_rx_pkt_get_ip4_info(pkt)->ip4_hdr.ip_p ==
                E810_IPPROTO_ICMP) {
                pt = PTYPE_IPV4_ICMP;
            } else if (v6 && net_rx_pkt_get_ip6_info(pkt)->l4proto ==
                       E810_IPPROTO_ICMPV6) {
                pt = PTYPE_IPV4_ICMP;
            }
            break;
        }
    }
    return v6 ? pt + PTYPE_IPV6_OFFSET : pt;
}

/* The SCTP common header: ports, verification tag, CRC32c checksum */
#define E810_SCTP_HDR_LEN 12

/* status_error0 checksum bits: L3L4P when the L3/L4 checksums were checked */
static uint16_t e810_rx_csum_status(struct NetRxPkt *pkt)
{
    bool v4, v6, l3_ok = true, l4_ok = true;
    EthL4HdrProto l4;
    uint16_t st = 0;

    net_rx_pkt_get_protocols(pkt, &v4, &v6, &l4);
    if (!v4 && !v6) {
        return 0;
    }
    if (v4 && !net_rx_pkt_validate_l3_csum(pkt, &l3_ok)) {
        return 0;
    }
    if (!l3_ok) {
        st |= RX_STATUS0_XSUM_IPE;
    }
    /*
     * net/eth.c bounds the TCP and UDP headers by the frame but takes SCTP
     * on the IP protocol number alone, and net_rx_pkt's SCTP checksum walk
     * then runs off the end of its iovec when the IP header length points
     * past the frame (found by scripts/fuzz-device on the ASan build:
     * heap-buffer-overflow in _net_rx_pkt_validate_sctp_sum).  A frame
     * without a whole SCTP common header is reported as not checked, so
     * the driver claims nothing about its checksums.
     */
    if (l4 == ETH_L4_HDR_PROTO_SCTP &&
        net_rx_pkt_get_l4_hdr_offset(pkt) + E810_SCTP_HDR_LEN >
        net_rx_pkt_get_total_len(pkt)) {
        return 0;
    }
    if (l4 != ETH_L4_HDR_PROTO_INVALID &&
        net_rx_pkt_validate_l4_csum(pkt, &l4_ok) && !l4_ok) {
        st |= RX_STATUS0_XSUM_L4E;
    }
    return st | RX_STATUS0_L3L4P;
}

/* Queue selection: RSS if e810_rss.c installed its hook, else queue 0 */
uint16_t e810_rx_select_queue(E810Core *core, struct NetRxPkt *pkt,
                              uint32_t *hash, bool *hash_valid)
{
    uint16_t q = 0;

    *hash = 0;
    *hash_valid = false;
    if (core->rx_rss && core->rx_rss(core, pkt, &q, hash)) {
        *hash_valid = true;
        if (q >= E810_NUM_QUEUES) {
            q = 0;
        }
    }
    return q;
}

typedef enum {
    E810_RX_OK,
    E810_RX_DISABLED,
    E810_RX_BAD_CTX,
    E810_RX_TOO_BIG,
    E810_RX_NO_DESC,
    E810_RX_DMA_ERR,
} E810RxResult;

static const char *const e810_rx_result_str[] = {
    [E810_RX_OK] = "delivered",
    [E810_RX_DISABLED] = "queue not enabled",
    [E810_RX_BAD_CTX] = "queue context unusable",
    [E810_RX_TOO_BIG] = "frame larger than the queue's rxmax",
    [E810_RX_NO_DESC] = "no free descriptors",
    [E810_RX_DMA_ERR] = "DMA error",
};

/*
 * Write frame[0..len) (already linear, padded) into queue q, write back the
 * descriptors and raise the queue's cause.
 */
static E810RxResult e810_rxq_write(E810Core *core, uint32_t q,
                                   uint8_t *frame, size_t len,
                                   struct NetRxPkt *pkt,
                                   uint32_t hash, bool hash_valid)
{
    PCIDevice *d = core->owner;
    E810RxCtx c;
    uint32_t need, head, rxdid;
    uint16_t ptype, status, umb;
    const struct eth_header *eh = PKT_GET_ETH_HDR(frame);
    size_t off = 0;

    if (!e810_rxq_live(core, q)) {
        return E810_RX_DISABLED;
    }
    e810_rxq_ctx(core, q, &c);
    if (!e810_rxq_ctx_ok(core, q, &c)) {
        return E810_RX_BAD_CTX;
    }
    if (len > e810_rxq_max_frame(&c)) {
        return E810_RX_TOO_BIG;
    }
    if (!c.crcstrip) {
        uint32_t fcs = ~net_crc32_le(frame, len);

        stl_le_p(frame + len, fcs);
        len += 4;
    }
    need = e810_rxq_descs_for(&c, len);
    if (e810_rxq_free(core, q, &c) < need) {
        return E810_RX_NO_DESC;
    }

    rxdid = core->qrxflxp_cntxt[q] & QRXFLXP_CNTXT_RXDID_IDX_M;
    if (rxdid != E810_RXDID_FLEX_NIC && rxdid != E810_RXDID_FLEX_NIC_2 &&
        !core->rxq_ctx_warned[q]) {
        core->rxq_ctx_warned[q] = 1;
        qemu_log_mask(LOG_UNIMP, "e810: Rx queue %u RXDID %u: written in "
                      "the flex NIC layout (RXDID 2)\n", q, rxdid);
    }
    ptype = e810_rx_ptype(pkt, frame, len);
    status = e810_rx_csum_status(pkt);
    if (hash_valid) {
        status |= RX_STATUS0_RSS_VALID;
    }
    status |= e810_fault_rx_status(core, q);    /* e810-fault-rx-desc */
    switch (get_eth_packet_type(eh)) {
    case ETH_PKT_BCAST:
        umb = 2;
        break;
    case ETH_PKT_MCAST:
        umb = 1;
        break;
    default:
        umb = 0;
        break;
    }

    head = core->rxq_head[q];
    for (uint32_t i = 0; i < need; i++) {
        dma_addr_t da = c.base + (dma_addr_t)head * E810_RX_DESC_SIZE;
        uint8_t desc[E810_RX_DESC_SIZE];
        size_t chunk = MIN(len - off, (size_t)c.dbuf);
        uint16_t st = RX_STATUS0_DD | status;
        bool failed = false;
        uint64_t addr;

        if (pci_dma_read(d, da, desc, sizeof(desc)) != MEMTX_OK) {
            qemu_log_mask(LOG_GUEST_ERROR, "e810: Rx queue %u descriptor %u "
                          "at 0x%" PRIx64 " unreadable\n", q, head,
                          (uint64_t)da);
            return E810_RX_DMA_ERR;
        }
        addr = ldq_le_p(desc);
        if (pci_dma_write(d, addr, frame + off, chunk) != MEMTX_OK) {
            /* end the frame here with RXE: the driver drops it */
            qemu_log_mask(LOG_GUEST_ERROR, "e810: Rx queue %u buffer 0x%"
                          PRIx64 " (%zu bytes) unwritable\n", q, addr, chunk);
            failed = true;
            st |= RX_STATUS0_RXE | RX_STATUS0_EOF;
        }
        off += chunk;
        if (off == len) {
            st |= RX_STATUS0_EOF;
        }

        memset(desc, 0, sizeof(desc));
        desc[RX_WB_RXDID] = rxdid;
        desc[RX_WB_UMBCAST] = umb << RX_UMBCAST_S;
        stw_le_p(desc + RX_WB_PTYPE, ptype);
        stw_le_p(desc + RX_WB_PKT_LEN, chunk & RX_PKT_LEN_M);
        stw_le_p(desc + RX_WB_STATUS0, st);
        if (hash_valid) {
            stl_le_p(desc + RX_WB_RSS_HASH, hash);
        }
        if (pci_dma_write(d, da, desc, sizeof(desc)) != MEMTX_OK) {
            return E810_RX_DMA_ERR;
        }
        head = (head + 1) % c.qlen;
        core->rxq_head[q] = head;
        if (failed) {
            e810_intr_queue_cause(core, core->qint_rqctl[q], false, q);
            return E810_RX_DMA_ERR;
        }
    }
    core->rx_packets++;
    trace_e810_rx_frame(q, len, need, ptype, head);
    e810_intr_queue_cause(core, core->qint_rqctl[q], false, q);
    return E810_RX_OK;
}

/* Linearise, pad, parse; NULL if the frame cannot be taken at all */
static uint8_t *e810_rx_prepare(E810Core *core, const struct iovec *iov,
                                int iovcnt, size_t *plen)
{
    size_t size = iov_size(iov, iovcnt);
    struct iovec one;

    if (size > E810_RX_MAX_FRAME) {
        return NULL;
    }
    iov_to_buf(iov, iovcnt, 0, core->rx_frame, size);
    if (size < E810_RX_MIN_FRAME) {
        memset(core->rx_frame + size, 0, E810_RX_MIN_FRAME - size);
        size = E810_RX_MIN_FRAME;
    }
    one.iov_base = core->rx_frame;
    one.iov_len = size;
    net_rx_pkt_attach_iovec(core->rx_pkt, &one, 1, 0, false);
    net_rx_pkt_set_packet_type(core->rx_pkt,
                               get_eth_packet_type(PKT_GET_ETH_HDR(
                                   core->rx_frame)));
    *plen = size;
    return core->rx_frame;
}

static void e810_rx_drop(E810Core *core, uint32_t q, size_t len,
                         E810RxResult r)
{
    core->rx_drops++;
    trace_e810_rx_drop_frame(q, len, e810_rx_result_str[r]);
}

ssize_t e810_rx_receive(E810Core *core, const struct iovec *iov, int iovcnt)
{
    size_t size = iov_size(iov, iovcnt), len;
    uint8_t *frame;
    uint32_t hash;
    bool hash_valid;
    uint16_t q;
    E810RxResult r;

    if (core->fault.link_down) {
        /* e810-link-flap: no frames while the link is down */
        trace_e810_rx_drop_frame(0, size, "link down (e810-link-flap)");
        return size;
    }
    frame = e810_rx_prepare(core, iov, iovcnt, &len);
    if (!frame) {
        e810_rx_drop(core, 0, size, E810_RX_TOO_BIG);
        return size;
    }
    q = e810_rx_select_queue(core, core->rx_pkt, &hash, &hash_valid);
    r = e810_rxq_write(core, q, frame, len, core->rx_pkt, hash, hash_valid);
    if (r != E810_RX_OK) {
        e810_rx_drop(core, q, len, r);
    }
    return size;
}

/* QMP e810-inject: the frame goes to queue q, whatever RSS would say */
bool e810_rxq_inject(E810Core *core, uint32_t q, const uint8_t *buf,
                     size_t size, Error **errp)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = size };
    uint32_t hash;
    bool hash_valid;
    uint8_t *frame;
    size_t len;
    E810RxResult r;

    if (q >= E810_NUM_QUEUES) {
        error_setg(errp, "queue %u out of range: the PF has %u Rx queues",
                   q, E810_NUM_QUEUES);
        return false;
    }
    if (size < ETH_HLEN) {
        error_setg(errp, "a frame needs at least %d bytes, got %zu",
                   ETH_HLEN, size);
        return false;
    }
    frame = e810_rx_prepare(core, &iov, 1, &len);
    if (!frame) {
        error_setg(errp, "frame of %zu bytes is larger than %u", size,
                   E810_RX_MAX_FRAME);
        return false;
    }
    /* the hash RSS would have computed, so the descriptor looks real */
    e810_rx_select_queue(core, core->rx_pkt, &hash, &hash_valid);
    trace_e810_rx_inject(q, size);
    r = e810_rxq_write(core, q, frame, len, core->rx_pkt, hash, hash_valid);
    if (r != E810_RX_OK) {
        e810_rx_drop(core, q, len, r);
        error_setg(errp, "Rx queue %u: frame dropped: %s", q,
                   e810_rx_result_str[r]);
        return false;
    }
    return true;
}

void e810_rxq_reset(E810Core *core)
{
    memset(core->qrx_ctrl, 0, sizeof(core->qrx_ctrl));
    memset(core->qrx_tail, 0, sizeof(core->qrx_tail));
    memset(core->qrx_context, 0, sizeof(core->qrx_context));
    memset(core->qrxflxp_cntxt, 0, sizeof(core->qrxflxp_cntxt));
    memset(core->rxq_head, 0, sizeof(core->rxq_head));
    memset(core->rxq_ctx_warned, 0, sizeof(core->rxq_ctx_warned));
}

void e810_rxq_realize(E810Core *core)
{
    net_rx_pkt_init(&core->rx_pkt);
    core->rx_frame = g_malloc0(E810_RX_MAX_FRAME + 4);
}

void e810_rxq_unrealize(E810Core *core)
{
    net_rx_pkt_uninit(core->rx_pkt);
    core->rx_pkt = NULL;
    g_free(core->rx_frame);
    core->rx_frame = NULL;
}

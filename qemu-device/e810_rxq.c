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
#include "e810_rss.h"
#include "e810_wire.h"
#include "trace.h"

#define E810_RX_MIN_FRAME       60      /* short frames are padded */
/* the parser reads headers only: the first bytes of a frame */
#define E810_RX_PARSE_MAX       512

#define QRXFLXP_CNTXT_RXDID_IDX_M   0x3F

/* The RLAN context of an Rx queue, unpacked (e810_rxq_ctx()) */
typedef struct E810RxCtx {
    uint64_t base;                      /* bytes */
    uint32_t head;
    uint32_t qlen;                      /* descriptors */
    uint32_t dbuf;                      /* bytes per data buffer */
    uint32_t hbuf;
    uint32_t rxmax;
    uint8_t dtype;
    uint8_t dsize;                      /* 1: 32-byte descriptors */
    uint8_t crcstrip;
    uint8_t l2tsel;
} E810RxCtx;

/* ------------------------------------------------------------------ */
/* the RLAN context                                                    */

static void e810_rxq_ctx(E810Core *core, uint32_t q, E810RxCtx *c)
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

/* ------------------------------------------------------------------ */
/* the parser                                                          */

static uint16_t e810_rx_rd16(const uint8_t *f, size_t len, size_t off)
{
    return off + 2 <= len ? lduw_be_p(f + off) : 0;
}

/*
 * The packet type of a frame, as the hardware parser reports it in the
 * descriptor and feeds it to the RSS block, and the offsets of the
 * headers.  At most two VLAN tags, IPv6 extension headers (hop-by-hop,
 * routing, destination options) up to 8 of them; every read is bounded
 * by len.
 */
void e810_rx_classify(const uint8_t *f, size_t len, E810RxParsed *p)
{
    size_t off = 12;
    uint16_t et;

    p->ptype = ICE_PTYPE_MAC_PAY;
    p->etype = -1;
    p->l3 = p->l4 = -1;
    p->v6 = false;
    p->l4proto = 0;
    if (len < ETH_HLEN) {
        return;
    }
    et = e810_rx_rd16(f, len, off);
    for (int i = 0; i < 2 && (et == ETH_P_VLAN || et == ETH_P_DVLAN ||
                              et == E810_ETH_P_QINQ_9100); i++) {
        off += 4;
        et = e810_rx_rd16(f, len, off);
    }
    p->etype = off;
    off += 2;
    if (et == ETH_P_ARP) {
        p->ptype = ICE_PTYPE_MAC_ARP;
    } else if (et == ETH_P_IP) {
        uint8_t ihl;

        if (off + 20 > len || (f[off] >> 4) != 4) {
            return;
        }
        ihl = f[off] & 0xF;
        if (ihl < 5 || off + ihl * 4 > len) {
            return;
        }
        p->l3 = off;
        if (e810_rx_rd16(f, len, off + 6) & (IP_OFFMASK | IP_MF)) {
            p->ptype = ICE_PTYPE_IPV4_FRAG;
            return;
        }
        p->l4proto = f[off + 9];
        p->l4 = off + ihl * 4;
        switch (p->l4proto) {
        case IP_PROTO_TCP:
            p->ptype = ICE_PTYPE_IPV4_TCP_PAY;
            break;
        case IP_PROTO_UDP:
            p->ptype = ICE_PTYPE_IPV4_UDP_PAY;
            break;
        case IP_PROTO_SCTP:
            p->ptype = ICE_PTYPE_IPV4_SCTP_PAY;
            break;
        case E810_IPPROTO_ICMP:
            p->ptype = ICE_PTYPE_IPV4_ICMP_PAY;
            break;
        default:
            p->ptype = ICE_PTYPE_IPV4_PAY;
            p->l4 = -1;
            break;
        }
    } else if (et == ETH_P_IPV6) {
        uint8_t nh;
        size_t l4;

        if (off + 40 > len || (f[off] >> 4) != 6) {
            return;
        }
        p->l3 = off;
        p->v6 = true;
        nh = f[off + 6];
        l4 = off + 40;
        for (int i = 0; i < 8 && (nh == IP6_HOP_BY_HOP || nh == IP6_ROUTING ||
                                  nh == IP6_DESTINATON); i++) {
            if (l4 + 8 > len) {
                p->ptype = ICE_PTYPE_IPV6_PAY;
                return;
            }
            nh = f[l4];
            l4 += (f[l4 + 1] + 1) * 8;
        }
        if (nh == IP6_FRAGMENT) {
            p->ptype = ICE_PTYPE_IPV6_FRAG;
            return;
        }
        p->l4proto = nh;
        p->l4 = l4;
        switch (nh) {
        case IP_PROTO_TCP:
            p->ptype = ICE_PTYPE_IPV6_TCP_PAY;
            break;
        case IP_PROTO_UDP:
            p->ptype = ICE_PTYPE_IPV6_UDP_PAY;
            break;
        case IP_PROTO_SCTP:
            p->ptype = ICE_PTYPE_IPV6_SCTP_PAY;
            break;
        case E810_IPPROTO_ICMPV6:
            p->ptype = ICE_PTYPE_IPV6_ICMP_PAY;
            break;
        default:
            p->ptype = ICE_PTYPE_IPV6_PAY;
            p->l4 = -1;
            break;
        }
    }
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
        st |= ICE_RX_FLEX_DESC_STATUS0_XSUM_IPE;
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
        st |= ICE_RX_FLEX_DESC_STATUS0_XSUM_L4E;
    }
    return st | ICE_RX_FLEX_DESC_STATUS0_L3L4P;
}

/*
 * Queue selection: RSS on the PF's main VSI (e810_rss.c), which always
 * picks a queue of the PF (the VSI's first, or 0, without a hash)
 */
static uint16_t e810_rx_select_queue(E810Core *core, const uint8_t *frame,
                                     size_t len, const E810RxParsed *p,
                                     uint32_t *hash, bool *hash_valid)
{
    uint16_t q;

    *hash_valid = e810_rss_rx(core, frame, len, p, &q, hash);
    return q;
}

typedef enum {
    E810_RX_OK,
    E810_RX_DISABLED,
    E810_RX_BAD_CTX,
    E810_RX_TOO_BIG,
    E810_RX_NO_DESC,
    E810_RX_DMA_ERR,
    E810_RX_NO_RULE,
} E810RxResult;

static const char *const e810_rx_result_str[] = {
    [E810_RX_OK] = "delivered",
    [E810_RX_DISABLED] = "queue not enabled",
    [E810_RX_BAD_CTX] = "queue context unusable",
    [E810_RX_TOO_BIG] = "frame larger than the queue's rxmax",
    [E810_RX_NO_DESC] = "no free descriptors",
    [E810_RX_DMA_ERR] = "DMA error",
    [E810_RX_NO_RULE] = "no switch rule forwards it to a VSI",
};

/*
 * Write frame[0..len) (already linear, padded) into queue q, write back the
 * descriptors and raise the queue's cause.
 */
static E810RxResult e810_rxq_write(E810Core *core, uint32_t q,
                                   uint8_t *frame, size_t len,
                                   struct NetRxPkt *pkt, uint16_t ptype,
                                   uint32_t hash, bool hash_valid)
{
    PCIDevice *d = core->owner;
    E810RxCtx c;
    uint32_t need, head, rxdid;
    uint16_t status, umb;
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
    if (rxdid != ICE_RXDID_FLEX_NIC && rxdid != ICE_RXDID_FLEX_NIC_2 &&
        !core->rxq_ctx_warned[q]) {
        core->rxq_ctx_warned[q] = 1;
        qemu_log_mask(LOG_UNIMP, "e810: Rx queue %u RXDID %u: written in "
                      "the flex NIC layout (RXDID 2)\n", q, rxdid);
    }
    status = e810_rx_csum_status(pkt);
    if (hash_valid) {
        status |= ICE_RX_FLEX_DESC_STATUS0_RSS_VALID;
    }
    status |= e810_fault_rx_status(core, q);    /* e810-fault-rx-desc */
    switch (get_eth_packet_type(eh)) {
    case ETH_PKT_BCAST:
        umb = ICE_RX_PTYPE_BROADCAST;
        break;
    case ETH_PKT_MCAST:
        umb = ICE_RX_PTYPE_MULTICAST;
        break;
    default:
        umb = ICE_RX_PTYPE_UNICAST;
        break;
    }

    head = core->rxq_head[q];
    for (uint32_t i = 0; i < need; i++) {
        dma_addr_t da = c.base +
                        (dma_addr_t)head * sizeof(struct ice_32b_rx_read_desc);
        struct ice_32b_rx_read_desc rd;
        struct ice_32b_rx_flex_desc_nic wb;
        size_t chunk = MIN(len - off, (size_t)c.dbuf);
        uint16_t st = ICE_RX_FLEX_DESC_STATUS0_DD | status;
        bool failed = false;
        uint64_t addr;

        QEMU_BUILD_BUG_ON(sizeof(rd) != sizeof(wb));
        if (pci_dma_read(d, da, &rd, sizeof(rd)) != MEMTX_OK) {
            qemu_log_mask(LOG_GUEST_ERROR, "e810: Rx queue %u descriptor %u "
                          "at 0x%" PRIx64 " unreadable\n", q, head,
                          (uint64_t)da);
            return E810_RX_DMA_ERR;
        }
        addr = le64_to_cpu(rd.pkt_addr);
        if (pci_dma_write(d, addr, frame + off, chunk) != MEMTX_OK) {
            /* end the frame here with RXE: the driver drops it */
            qemu_log_mask(LOG_GUEST_ERROR, "e810: Rx queue %u buffer 0x%"
                          PRIx64 " (%zu bytes) unwritable\n", q, addr, chunk);
            failed = true;
            st |= ICE_RX_FLEX_DESC_STATUS0_RXE |
                  ICE_RX_FLEX_DESC_STATUS0_EOF;
        }
        off += chunk;
        if (off == len) {
            st |= ICE_RX_FLEX_DESC_STATUS0_EOF;
        }

        wb = (struct ice_32b_rx_flex_desc_nic) {
            .rxdid = rxdid,
            .mir_id_umb_cast = umb << ICE_RX_FLEX_DESC_UMB_CAST_S,
            .ptype_flexi_flags0 = cpu_to_le16(ptype),
            .pkt_len = cpu_to_le16(chunk & ICE_RX_FLX_DESC_PKT_LEN_M),
            .status_error0 = cpu_to_le16(st),
            .rss_hash = cpu_to_le32(hash_valid ? hash : 0),
        };
        if (pci_dma_write(d, da, &wb, sizeof(wb)) != MEMTX_OK) {
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
    E810RxParsed p;
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
    if (core->link.mac_loopback) {
        /* the MAC receives its own Tx frames only */
        trace_e810_rx_drop_frame(0, size, "MAC loopback");
        return size;
    }
    frame = e810_rx_prepare(core, iov, iovcnt, &len);
    if (!frame) {
        e810_rx_drop(core, 0, size, E810_RX_TOO_BIG);
        return size;
    }
    e810_rx_classify(frame, MIN(len, E810_RX_PARSE_MAX), &p);
    q = e810_rx_select_queue(core, frame, MIN(len, E810_RX_PARSE_MAX), &p,
                             &hash, &hash_valid);
    r = e810_rxq_write(core, q, frame, len, core->rx_pkt, p.ptype, hash,
                       hash_valid);
    if (r != E810_RX_OK) {
        e810_rx_drop(core, q, len, r);
    }
    return size;
}

/*
 * MAC loopback (0x0620): a frame the Tx path would have put on the wire
 * comes back into the receive side, where the switch forwards it by its
 * destination MAC (e810_switch_lookup_vsis()) to each VSI's queue (RSS
 * inside the VSI, else its first queue).  The ethtool loopback self-test
 * (ice_loopback_test()) sends broadcast frames on a loopback VSI that
 * added a broadcast filter, and counts them on that VSI's Rx ring.
 */
void e810_rx_loopback(E810Core *core, const struct iovec *iov, int iovcnt)
{
    uint16_t vsis[E810_RX_MAX_VSIS];
    size_t len;
    unsigned n;
    uint8_t *frame = e810_rx_prepare(core, iov, iovcnt, &len);
    E810RxParsed p;

    if (!frame) {
        e810_rx_drop(core, 0, iov_size(iov, iovcnt), E810_RX_TOO_BIG);
        return;
    }
    e810_rx_classify(frame, MIN(len, E810_RX_PARSE_MAX), &p);
    n = e810_switch_lookup_vsis(core, frame, vsis);
    trace_e810_rx_loopback(len, n);
    if (!n) {
        e810_rx_drop(core, 0, len, E810_RX_NO_RULE);
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        uint32_t hash;
        uint16_t q;
        bool hash_valid = e810_rss_rx_vsi(core, vsis[i], frame,
                                          MIN(len, E810_RX_PARSE_MAX), &p,
                                          &q, &hash);
        E810RxResult r;

        trace_e810_rx_loopback_vsi(vsis[i], q);
        r = e810_rxq_write(core, q, frame, len, core->rx_pkt, p.ptype, hash,
                           hash_valid);
        if (r != E810_RX_OK) {
            e810_rx_drop(core, q, len, r);
        }
    }
}

/* QMP e810-inject: the frame goes to queue q, whatever RSS would say */
bool e810_rxq_inject(E810Core *core, uint32_t q, const uint8_t *buf,
                     size_t size, Error **errp)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = size };
    E810RxParsed p;
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
    e810_rx_classify(frame, MIN(len, E810_RX_PARSE_MAX), &p);
    e810_rx_select_queue(core, frame, MIN(len, E810_RX_PARSE_MAX), &p,
                         &hash, &hash_valid);
    trace_e810_rx_inject(q, size);
    r = e810_rxq_write(core, q, frame, len, core->rx_pkt, p.ptype, hash,
                       hash_valid);
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

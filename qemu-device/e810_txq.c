/*
 * QEMU Intel E810 ("ice") Ethernet controller: LAN Tx queues
 *
 * A Tx queue is created *and enabled* by the 0x0C30 add_txqs admin
 * command, which also hangs a LEAF node for it in the scheduler tree and
 * returns that node's TEID; 0x0C31 dis_txqs removes it.  The TLAN context
 * (22 bytes, ice_tlan_ctx_info[] in ice_common.c) gives the ring: base in
 * 128-byte units (57 bits at 0) and qlen (13 bits at 135).
 *
 * Transmit (ice_tx_map() / ice_clean_tx_irq() are the spec): a write of
 * QTX_COMM_DBELL(q) = next_to_use makes the device walk its head up to
 * that tail, at most one lap of the ring per write.  16-byte descriptors:
 *  - DTYPE 0 data: buffer address (qword 0), CMD (EOP, RS, IL2TAG1,
 *    IIPT, L4T), BUF_SZ (47:34), L2TAG1 (63:48); buffers are gathered
 *    until EOP and the frame goes out through net_tx_pkt with the
 *    checksum/TSO/VLAN offloads the first data descriptor (and a context
 *    descriptor) asked for, padded to 60 bytes;
 *  - DTYPE 1 context: TSO (TSO_LEN, MSS) for the next frame; the rest is
 *    parsed and ignored;
 *  - DTYPE 8 flow-director programming: consumed; the dummy frame after
 *    it is not sent.
 * Completion is descriptor write-back (wb_mode 0): qword 1 of every RS
 * descriptor becomes DTYPE 0xF "desc done", which is what
 * ice_clean_tx_irq() polls on the EOP descriptor; then QTX_COMM_HEAD
 * follows the head and the queue's QINT_TQCTL cause is raised.
 *
 * A frame the tail cuts in two is not started: the head stays on its
 * first descriptor and the next doorbell reads it again, so no partial
 * frame is kept between writes (nor migrated).  A frame of more than
 * E810_TX_MAX_DESCS descriptors is dropped and the ring consumed up to
 * its EOP; a bad descriptor type or an unmappable buffer drops the frame
 * at its EOP (LOG_GUEST_ERROR); RS descriptors are completed either way.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "qemu/iov.h"
#include "hw/pci/pci.h"
#include "net/eth.h"
#include "net/net.h"
#include "hw/net/net_tx_pkt.h"
#include "net/checksum.h"
#include "e810_core.h"
#include "e810_adminq.h"
#include "e810_regs.h"
#include "trace.h"

QEMU_BUILD_BUG_ON(sizeof_field(struct ice_aqc_add_txqs_perq, txq_ctx) !=
                  sizeof_field(E810Core, txq_ctx[0]));

/* 0x0C30 add_txqs: create the LEAF, return its TEID, enable the queue */
uint16_t e810_aq_add_txqs(E810Core *core, E810AqCmd *cmd)
{
    uint8_t ngrps = cmd->params.add_txqs.num_qgrps;
    uint32_t off = 0;

    if (!cmd->buf) {
        return ICE_AQ_RC_EINVAL;
    }
    for (uint8_t g = 0; g < ngrps; g++) {
        struct ice_aqc_add_tx_qgrp *grp = (void *)(cmd->buf + off);
        uint32_t parent_teid;
        uint8_t nq;

        if (off + sizeof(*grp) > cmd->buf_len) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: 0x0C30 group %u beyond the buffer\n", g);
            return ICE_AQ_RC_EINVAL;
        }
        parent_teid = le32_to_cpu(grp->parent_teid);
        nq = grp->num_txqs;
        off += sizeof(*grp);
        if (off + (uint32_t)nq * sizeof(grp->txqs[0]) > cmd->buf_len) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: 0x0C30 %u queues overrun the buffer\n", nq);
            return ICE_AQ_RC_EINVAL;
        }
        for (uint8_t i = 0; i < nq; i++) {
            struct ice_aqc_add_txqs_perq *q = &grp->txqs[i];
            uint16_t txq = le16_to_cpu(q->txq_id);
            E810SchedNode *leaf, *old;

            if (txq >= E810_NUM_QUEUES) {
                qemu_log_mask(LOG_GUEST_ERROR,
                              "e810: 0x0C30 of Tx queue %u, PF owns %u\n",
                              txq, E810_NUM_QUEUES);
                return ICE_AQ_RC_EINVAL;
            }
            /* re-adding a live queue (a failed open's leftovers) replaces it */
            old = core->txq_enabled[txq] ?
                  e810_sched_find(core, core->txq_teid[txq]) : NULL;
            if (old) {
                e810_sched_remove(core, old);
            }
            leaf = e810_sched_add_leaf(core, parent_teid, txq, &q->info);
            if (!leaf) {
                qemu_log_mask(LOG_GUEST_ERROR,
                              "e810: 0x0C30 parent TEID 0x%x missing or "
                              "full\n", parent_teid);
                return ICE_AQ_RC_EINVAL;
            }
            q->q_teid = cpu_to_le32(leaf->teid);
            memcpy(core->txq_ctx[txq], q->txq_ctx, sizeof(q->txq_ctx));
            core->txq_teid[txq] = leaf->teid;
            core->txq_enabled[txq] = 1;
            core->qtx_comm_head[txq] = 0;
            core->qtx_comm_dbell[txq] = 0;
            core->txq_skip[txq] = 0;
            trace_e810_txq_add(txq, leaf->teid, parent_teid);
        }
        off += nq * sizeof(grp->txqs[0]);
    }
    cmd->buf_wb = true;
    return ICE_AQ_RC_OK;
}

/* 0x0C31 dis_txqs: groups of {parent_teid, num_qs, q_id[]} (+2 if even) */
uint16_t e810_aq_dis_txqs(E810Core *core, E810AqCmd *cmd)
{
    uint8_t ngrps = cmd->params.dis_txqs.num_entries;
    uint32_t off = 0;
    bool missing = false;

    if (!cmd->buf) {
        /* a reset-source-only request (VM/VF reset): nothing to do */
        return ICE_AQ_RC_OK;
    }
    for (uint8_t g = 0; g < ngrps; g++) {
        struct ice_aqc_dis_txq_item *item = (void *)(cmd->buf + off);
        uint8_t nq;
        uint32_t size;

        if (off + sizeof(*item) > cmd->buf_len) {
            return ICE_AQ_RC_EINVAL;
        }
        nq = item->num_qs;
        /* q_id[] is padded to keep the next group's parent_teid aligned */
        size = sizeof(*item) + sizeof(item->q_id[0]) * nq +
               ((nq % 2) == 0 ? 2 : 0);
        if (off + size > cmd->buf_len) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: 0x0C31 group %u overruns the buffer\n", g);
            return ICE_AQ_RC_EINVAL;
        }
        for (uint8_t i = 0; i < nq; i++) {
            uint16_t txq = le16_to_cpu(item->q_id[i]) &
                           ~(1u << ICE_AQC_Q_DIS_BUF_ELEM_TYPE_S);
            E810SchedNode *leaf;

            if (txq >= E810_NUM_QUEUES || !core->txq_enabled[txq]) {
                missing = true;
                continue;
            }
            leaf = e810_sched_find(core, core->txq_teid[txq]);
            if (leaf) {
                e810_sched_remove(core, leaf);
            }
            core->txq_enabled[txq] = 0;
            core->txq_teid[txq] = 0;
            trace_e810_txq_dis(txq);
        }
        off += size;
    }
    return missing ? ICE_AQ_RC_ENOENT : ICE_AQ_RC_OK;
}

/* ------------------------------------------------------------------ */
/* transmit                                                            */

#define E810_TX_DESC_SIZE       16
#define TXD_DTYPE_M             0xFULL
#define TXD_DTYPE_DATA          0x0
#define TXD_DTYPE_CTX           0x1
#define TXD_DTYPE_FLTR_PROG     0x8
#define TXD_DTYPE_DESC_DONE     0xF
#define TXD_CMD(qw1)            (((qw1) >> 4) & 0xFFF)
#define TXD_BUF_SZ(qw1)         (((qw1) >> 34) & 0x3FFF)
#define TXD_L2TAG1(qw1)         ((uint16_t)((qw1) >> 48))
#define TXD_CMD_EOP             0x001
#define TXD_CMD_RS              0x002
#define TXD_CMD_IL2TAG1         0x008
#define TXD_CMD_IIPT_M          0x060
#define TXD_CMD_IIPT_IPV4_CSUM  0x060
#define TXD_CMD_L4T_M           0x300
#define TXD_CMD_L4T_SCTP        0x200
#define TXD_CMD_L4T_UDP         0x300
#define TXD_CTX_CMD(qw1)        (((qw1) >> 4) & 0x7F)
#define TXD_CTX_CMD_TSO         0x01
#define TXD_CTX_CMD_IL2TAG2     0x04
#define TXD_CTX_TSO_LEN(qw1)    (((qw1) >> 30) & 0x3FFFF)
#define TXD_CTX_MSS(qw1)        (((qw1) >> 50) & 0x3FFF)
#define E810_TX_MIN_MSS         64      /* ICE_TXD_CTX_MIN_MSS */

/* One frame being gathered from the ring */
typedef struct E810TxFrame {
    uint32_t ndesc;             /* descriptors so far, context ones too */
    uint32_t nfrags;
    uint32_t first_cmd;         /* CMD of the first data descriptor */
    uint16_t l2tag1;
    uint32_t mss;               /* TSO from a context descriptor, else 0 */
    uint32_t tso_len;
    size_t bytes;
    bool fdir;                  /* follows a flow-director program desc */
    bool bad;                   /* drop it at EOP (already logged) */
    uint32_t nrs;
    uint16_t rs[E810_TX_MAX_DESCS];
} E810TxFrame;

static void e810_tx_out(void *opaque, const struct iovec *iov, int iovcnt,
                        const struct iovec *virt_iov, int virt_iovcnt)
{
    E810Core *core = opaque;
    NetClientState *nc = qemu_get_queue(core->nic);
    size_t size = iov_size(iov, iovcnt);

    if (core->link.mac_loopback) {
        /* 0x0620: the MAC hands it to the receive side, not the wire */
        e810_rx_loopback(core, iov, iovcnt);
        core->tx_packets++;
        return;
    }
    if (core->fault.link_down) {
        /* e810-link-flap: the frame is completed but not sent */
        core->tx_drops++;
        trace_e810_tx_drop(0, size);
        return;
    }
    if (size < ETH_ZLEN) {
        /* the MAC pads short frames */
        uint8_t buf[ETH_ZLEN] = { 0 };

        iov_to_buf(iov, iovcnt, 0, buf, size);
        qemu_send_packet(nc, buf, ETH_ZLEN);
        size = ETH_ZLEN;
    } else {
        qemu_sendv_packet(nc, iov, iovcnt);
    }
    core->tx_packets++;
    trace_e810_tx_frame(size);
}

/*
 * UDP segmentation (ice_tso() with SKB_GSO_UDP_L4: a TSO context and
 * L4T = UDP): every MSS-sized piece of the payload becomes a datagram of
 * its own, with the headers copied and IP length/ID/checksum, UDP length
 * and checksum fixed.  QEMU's net_tx_pkt only knows UFO (IP fragments),
 * which is not what the driver asked for.
 */
typedef struct E810Uso {
    E810Core *core;
    uint32_t q;
    uint32_t mss;
    bool ok;
} E810Uso;

static void e810_tx_uso_cb(void *opaque, const struct iovec *iov, int iovcnt,
                           const struct iovec *virt_iov, int virt_iovcnt)
{
    E810Uso *u = opaque;
    size_t size = iov_size(iov, iovcnt), l2 = ETH_HLEN, l3, hdr, payload;
    g_autofree uint8_t *buf = NULL;
    g_autofree uint8_t *seg = NULL;
    uint16_t et, ip_id = 0;
    bool v4;

    if (size < ETH_HLEN + 4 || size > E810_TX_MAX_TSO + 128) {
        return;
    }
    buf = g_malloc(size);
    iov_to_buf(iov, iovcnt, 0, buf, size);
    et = lduw_be_p(buf + 12);
    if (et == ETH_P_VLAN) {
        l2 += 4;
        et = lduw_be_p(buf + 16);
    }
    if (et == ETH_P_IP && size >= l2 + 20) {
        v4 = true;
        l3 = (buf[l2] & 0xF) * 4;
        ip_id = lduw_be_p(buf + l2 + 4);
        if (l3 < 20 || buf[l2 + 9] != IP_PROTO_UDP) {
            return;
        }
    } else if (et == ETH_P_IPV6 && size >= l2 + 40) {
        v4 = false;
        l3 = 40;
        if (buf[l2 + 6] != IP_PROTO_UDP) {
            return;
        }
    } else {
        return;
    }
    hdr = l2 + l3 + 8;
    if (hdr > size) {
        return;
    }
    payload = size - hdr;
    seg = g_malloc(hdr + u->mss);
    for (size_t off = 0, i = 0; off < payload; i++) {
        size_t n = MIN((size_t)u->mss, payload - off);
        uint8_t *ip = seg + l2, *udp = seg + l2 + l3;
        uint16_t ulen = 8 + n, csum;
        uint32_t sum;
        struct iovec one = { .iov_base = seg, .iov_len = hdr + n };

        memcpy(seg, buf, hdr);
        memcpy(seg + hdr, buf + hdr + off, n);
        if (v4) {
            stw_be_p(ip + 2, l3 + ulen);
            stw_be_p(ip + 4, ip_id + i);
            stw_be_p(ip + 10, 0);
            stw_be_p(ip + 10, net_raw_checksum(ip, l3));
            sum = net_checksum_add(8, ip + 12);
        } else {
            stw_be_p(ip + 4, ulen);
            sum = net_checksum_add(32, ip + 8);
        }
        sum += IP_PROTO_UDP + ulen;
        stw_be_p(udp + 4, ulen);
        stw_be_p(udp + 6, 0);
        sum += net_checksum_add(ulen, udp);
        csum = net_checksum_finish_nozero(sum);
        stw_be_p(udp + 6, csum);
        e810_tx_out(u->core, &one, 1, NULL, 0);
        off += n;
    }
    u->ok = true;
}

static void e810_tx_bad(E810Core *core, uint32_t q, uint32_t idx,
                        E810TxFrame *fr, const char *why)
{
    if (!fr->bad) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: Tx queue %u descriptor %u: %s; "
                      "frame dropped\n", q, idx, why);
    }
    fr->bad = true;
}

static bool e810_tx_send(E810Core *core, uint32_t q, E810TxFrame *fr)
{
    struct NetTxPkt *pkt = core->tx_pkt;
    uint32_t cmd = fr->first_cmd;

    if (!net_tx_pkt_parse(pkt)) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: Tx queue %u: frame of %zu "
                      "bytes has no parsable Ethernet header\n",
                      q, fr->bytes);
        return false;
    }
    if (cmd & TXD_CMD_IL2TAG1) {
        net_tx_pkt_setup_vlan_header_ex(pkt, fr->l2tag1, ETH_P_VLAN);
    }
    if (fr->mss && (cmd & TXD_CMD_L4T_M) == TXD_CMD_L4T_UDP) {
        E810Uso u = { .core = core, .q = q, .mss = fr->mss };

        net_tx_pkt_send_custom(pkt, false, e810_tx_uso_cb, &u);
        if (!u.ok) {
            qemu_log_mask(LOG_GUEST_ERROR, "e810: Tx queue %u: UDP "
                          "segmentation of a frame that is not UDP\n", q);
        }
        return u.ok;
    }
    if (fr->mss) {
        if (!net_tx_pkt_build_vheader(pkt, true, true, fr->mss)) {
            qemu_log_mask(LOG_GUEST_ERROR, "e810: Tx queue %u: TSO of a "
                          "frame that is not TCP/UDP over IP\n", q);
            return false;
        }
        net_tx_pkt_update_ip_checksums(pkt);
    } else {
        uint32_t l4t = cmd & TXD_CMD_L4T_M;

        if (l4t == TXD_CMD_L4T_SCTP) {
            if (!net_tx_pkt_update_sctp_checksum(pkt)) {
                return false;
            }
        } else if (l4t && !net_tx_pkt_build_vheader(pkt, false, true, 0)) {
            qemu_log_mask(LOG_GUEST_ERROR, "e810: Tx queue %u: L4 checksum "
                          "offload of a frame without TCP/UDP\n", q);
            return false;
        }
        if ((cmd & TXD_CMD_IIPT_M) == TXD_CMD_IIPT_IPV4_CSUM) {
            net_tx_pkt_update_ip_hdr_checksum(pkt);
        }
    }
    return net_tx_pkt_send_custom(pkt, false, e810_tx_out, core);
}

/* Write DTYPE 0xF ("desc done") into qword 1 of the frame's RS descriptors */
static bool e810_tx_complete(E810Core *core, uint32_t q, uint64_t base,
                             E810TxFrame *fr)
{
    uint8_t done[8];

    stq_le_p(done, TXD_DTYPE_DESC_DONE);
    for (uint32_t i = 0; i < fr->nrs; i++) {
        dma_addr_t da = base + (dma_addr_t)fr->rs[i] * E810_TX_DESC_SIZE + 8;

        if (pci_dma_write(core->owner, da, done, sizeof(done)) != MEMTX_OK) {
            qemu_log_mask(LOG_GUEST_ERROR, "e810: Tx queue %u descriptor %u "
                          "write-back failed\n", q, fr->rs[i]);
        }
    }
    return fr->nrs != 0;
}

static void e810_tx_frame_reset(E810Core *core, E810TxFrame *fr)
{
    memset(fr, 0, offsetof(E810TxFrame, rs));
    net_tx_pkt_reset(core->tx_pkt, net_tx_pkt_unmap_frag_pci, core->owner);
}

/*
 * Walk queue q from its head to tail: at most qlen - 1 descriptors, so at
 * most one lap of the ring per doorbell whatever the ring holds.
 */
static void e810_txq_process(E810Core *core, uint32_t q, uint64_t base,
                             uint32_t qlen, uint32_t tail)
{
    PCIDevice *d = core->owner;
    E810TxFrame *fr = core->tx_frame_p;
    uint32_t head = core->qtx_comm_head[q];
    uint32_t i = head, steps = 0;
    bool completed = false;

    if (head >= qlen) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: Tx queue %u head %u beyond the "
                      "ring of %u: restarting at 0\n", q, head, qlen);
        head = i = 0;
    }
    e810_tx_frame_reset(core, fr);
    while (i != tail && steps++ < qlen) {
        uint8_t raw[E810_TX_DESC_SIZE];
        uint64_t qw0, qw1;
        uint32_t dtype, cmd = 0, idx = i;
        bool eop = false;

        if (pci_dma_read(d, base + (dma_addr_t)i * E810_TX_DESC_SIZE, raw,
                         sizeof(raw)) != MEMTX_OK) {
            qemu_log_mask(LOG_GUEST_ERROR, "e810: Tx queue %u descriptor %u "
                          "at 0x%" PRIx64 " unreadable\n", q, i,
                          base + (uint64_t)i * E810_TX_DESC_SIZE);
            break;
        }
        qw0 = ldq_le_p(raw);
        qw1 = ldq_le_p(raw + 8);
        dtype = qw1 & TXD_DTYPE_M;
        i = (i + 1) % qlen;
        fr->ndesc++;

        switch (dtype) {
        case TXD_DTYPE_DATA: {
            uint32_t size = TXD_BUF_SZ(qw1);

            cmd = TXD_CMD(qw1);
            eop = cmd & TXD_CMD_EOP;
            if (cmd & TXD_CMD_RS) {
                fr->rs[fr->nrs++] = idx;
            }
            if (core->txq_skip[q]) {
                break;
            }
            if (!fr->nfrags) {
                fr->first_cmd = cmd;
                fr->l2tag1 = TXD_L2TAG1(qw1);
            }
            fr->nfrags++;
            fr->bytes += size;
            if (fr->bad || fr->fdir || !size) {
                break;
            }
            if (fr->bytes > (fr->mss ? E810_TX_MAX_TSO : E810_TX_MAX_FRAME)) {
                e810_tx_bad(core, q, idx, fr, "frame too long");
            } else if (!net_tx_pkt_add_raw_fragment_pci(core->tx_pkt, d, qw0,
                                                        size)) {
                e810_tx_bad(core, q, idx, fr, "buffer not mappable");
            }
            break;
        }
        case TXD_DTYPE_CTX:
            if (TXD_CTX_CMD(qw1) & TXD_CTX_CMD_TSO) {
                fr->mss = TXD_CTX_MSS(qw1);
                fr->tso_len = TXD_CTX_TSO_LEN(qw1);
                if (fr->mss < E810_TX_MIN_MSS) {
                    e810_tx_bad(core, q, idx, fr, "TSO MSS below 64");
                }
            }
            if ((TXD_CTX_CMD(qw1) & TXD_CTX_CMD_IL2TAG2) &&
                !core->txq_skip[q]) {
                qemu_log_mask(LOG_UNIMP, "e810: Tx IL2TAG2 (outer VLAN "
                              "0x%x) not inserted\n",
                              (unsigned)((qw0 >> 32) & 0xFFFF));
            }
            break;
        case TXD_DTYPE_FLTR_PROG:
            /* flow-director programming: the next frame is its dummy */
            fr->fdir = true;
            break;
        default:
            if (!core->txq_skip[q]) {
                e810_tx_bad(core, q, idx, fr, dtype == TXD_DTYPE_DESC_DONE ?
                            "an already completed descriptor" :
                            "unknown descriptor type");
            }
            break;
        }

        if (core->txq_skip[q]) {
            /* dropping an over-long frame: consume up to its EOP */
            completed |= e810_tx_complete(core, q, base, fr);
            fr->nrs = 0;
            head = i;
            if (eop) {
                core->txq_skip[q] = 0;
                e810_tx_frame_reset(core, fr);
            }
            continue;
        }
        if (!eop && (fr->ndesc >= E810_TX_MAX_DESCS ||
                     fr->nrs >= E810_TX_MAX_DESCS)) {
            qemu_log_mask(LOG_GUEST_ERROR, "e810: Tx queue %u: no EOP within "
                          "%u descriptors from %u: frame dropped\n",
                          q, E810_TX_MAX_DESCS, head);
            completed |= e810_tx_complete(core, q, base, fr);
            e810_tx_frame_reset(core, fr);
            core->txq_skip[q] = 1;
            head = i;
            continue;
        }
        if (eop) {
            if (fr->fdir) {
                trace_e810_tx_fdir(q);
            } else if (fr->bad || !e810_tx_send(core, q, fr)) {
                core->tx_drops++;
                trace_e810_tx_drop(q, fr->bytes);
            }
            completed |= e810_tx_complete(core, q, base, fr);
            e810_tx_frame_reset(core, fr);
            head = i;
        }
    }
    /* a frame the tail cut is read again from its start by the next write */
    e810_tx_frame_reset(core, fr);
    core->qtx_comm_head[q] = head;
    trace_e810_txq_done(q, head, tail, completed);
    if (completed) {
        e810_intr_queue_cause(core, core->qint_tqctl[q], true, q);
    }
}

void e810_txq_dbell_write(E810Core *core, uint32_t q, uint32_t val)
{
    const uint8_t *ctx = core->txq_ctx[q];
    uint64_t base;
    uint32_t qlen, tail;

    trace_e810_txq_dbell(q, val);
    core->qtx_comm_dbell[q] = val;
    if (!core->txq_enabled[q]) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: QTX_COMM_DBELL(%u) = %u on a queue not added "
                      "with 0x0C30\n", q, val);
        return;
    }
    if (e810_fault_tx_hung(core, q)) {
        /* e810-fault-tx-hang: the doorbell waits for the resume */
        return;
    }
    base = e810_ctx_bits(ctx, sizeof(core->txq_ctx[q]), 0, 57) << 7;
    qlen = e810_ctx_bits(ctx, sizeof(core->txq_ctx[q]), 135, 13);
    tail = val & QTX_COMM_HEAD_HEAD_M;
    if (qlen < 2) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: Tx queue %u context has qlen "
                      "%u\n", q, qlen);
        return;
    }
    if (val >= qlen) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: QTX_COMM_DBELL(%u) = %u beyond "
                      "the ring of %u\n", q, val, qlen);
        return;
    }
    e810_txq_process(core, q, base, qlen, tail);
}

/* e810-fault-tx-hang resumed: act on the last doorbell of queue q */
void e810_txq_kick(E810Core *core, uint32_t q)
{
    if (q < E810_NUM_QUEUES && core->txq_enabled[q]) {
        e810_txq_dbell_write(core, q, core->qtx_comm_dbell[q]);
    }
}

void e810_txq_reset(E810Core *core)
{
    memset(core->qtx_comm_dbell, 0, sizeof(core->qtx_comm_dbell));
    memset(core->qtx_comm_head, 0, sizeof(core->qtx_comm_head));
    memset(core->txq_enabled, 0, sizeof(core->txq_enabled));
    memset(core->txq_teid, 0, sizeof(core->txq_teid));
    memset(core->txq_ctx, 0, sizeof(core->txq_ctx));
    memset(core->txq_skip, 0, sizeof(core->txq_skip));
}

void e810_txq_realize(E810Core *core)
{
    net_tx_pkt_init(&core->tx_pkt, E810_TX_MAX_DESCS);
    core->tx_frame_p = g_new0(E810TxFrame, 1);
}

void e810_txq_unrealize(E810Core *core)
{
    net_tx_pkt_uninit(core->tx_pkt);
    core->tx_pkt = NULL;
    g_free(core->tx_frame_p);
    core->tx_frame_p = NULL;
}

/*
 * QEMU Intel E810 ("ice") Ethernet controller: LAN Tx queues
 *
 * A Tx queue is created *and enabled* by the 0x0C30 add_txqs admin
 * command, which also hangs a LEAF node for it in the scheduler tree and
 * returns that node's TEID; 0x0C31 dis_txqs removes it.  The driver then
 * only rings QTX_COMM_DBELL.  The transmit data path is not modelled yet:
 * doorbells are recorded and traced.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "e810_core.h"
#include "e810_adminq.h"
#include "e810_regs.h"
#include "trace.h"

#define E810_TXQ_GRP_HDR_SIZE   8       /* struct ice_aqc_add_tx_qgrp */
#define E810_TXQ_PERQ_SIZE      48      /* struct ice_aqc_add_txqs_perq */

/* 0x0C30 add_txqs: create the LEAF, return its TEID, enable the queue */
uint16_t e810_aq_add_txqs(E810Core *core, E810AqCmd *cmd)
{
    uint8_t ngrps = cmd->params[0];
    uint32_t off = 0;

    if (!cmd->buf) {
        return ICE_AQ_RC_EINVAL;
    }
    for (uint8_t g = 0; g < ngrps; g++) {
        uint32_t parent_teid;
        uint8_t nq;

        if (off + E810_TXQ_GRP_HDR_SIZE > cmd->buf_len) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: 0x0C30 group %u beyond the buffer\n", g);
            return ICE_AQ_RC_EINVAL;
        }
        parent_teid = e810_le32(cmd->buf + off);
        nq = cmd->buf[off + 4];
        off += E810_TXQ_GRP_HDR_SIZE;
        if (off + (uint32_t)nq * E810_TXQ_PERQ_SIZE > cmd->buf_len) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: 0x0C30 %u queues overrun the buffer\n", nq);
            return ICE_AQ_RC_EINVAL;
        }
        for (uint8_t i = 0; i < nq; i++) {
            uint8_t *q = cmd->buf + off + i * E810_TXQ_PERQ_SIZE;
            uint16_t txq = e810_le16(q);
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
            leaf = e810_sched_add_leaf(core, parent_teid, txq, q + 32);
            if (!leaf) {
                qemu_log_mask(LOG_GUEST_ERROR,
                              "e810: 0x0C30 parent TEID 0x%x missing or "
                              "full\n", parent_teid);
                return ICE_AQ_RC_EINVAL;
            }
            e810_st32(q + 4, leaf->teid);
            memcpy(core->txq_ctx[txq], q + 8, sizeof(core->txq_ctx[txq]));
            core->txq_teid[txq] = leaf->teid;
            core->txq_enabled[txq] = 1;
            core->qtx_comm_head[txq] = 0;
            core->qtx_comm_dbell[txq] = 0;
            trace_e810_txq_add(txq, leaf->teid, parent_teid);
        }
        off += nq * E810_TXQ_PERQ_SIZE;
    }
    cmd->buf_wb = true;
    return ICE_AQ_RC_OK;
}

/* 0x0C31 dis_txqs: groups of {parent_teid, num_qs, q_id[]} (+2 if even) */
uint16_t e810_aq_dis_txqs(E810Core *core, E810AqCmd *cmd)
{
    uint8_t ngrps = cmd->params[1];
    uint32_t off = 0;
    bool missing = false;

    if (!cmd->buf) {
        /* a reset-source-only request (VM/VF reset): nothing to do */
        return ICE_AQ_RC_OK;
    }
    for (uint8_t g = 0; g < ngrps; g++) {
        uint8_t nq;
        uint32_t size;

        if (off + 6 > cmd->buf_len) {
            return ICE_AQ_RC_EINVAL;
        }
        nq = cmd->buf[off + 4];
        size = 6 + 2 * nq + ((nq % 2) == 0 ? 2 : 0);
        if (off + size > cmd->buf_len) {
            qemu_log_mask(LOG_GUEST_ERROR,
                          "e810: 0x0C31 group %u overruns the buffer\n", g);
            return ICE_AQ_RC_EINVAL;
        }
        for (uint8_t i = 0; i < nq; i++) {
            uint16_t txq = e810_le16(cmd->buf + off + 6 + 2 * i) & 0x7FFF;
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

void e810_txq_dbell_write(E810Core *core, uint32_t q, uint32_t val)
{
    trace_e810_txq_dbell(q, val);
    if (!core->txq_enabled[q]) {
        qemu_log_mask(LOG_GUEST_ERROR,
                      "e810: QTX_COMM_DBELL(%u) = %u on a queue not added "
                      "with 0x0C30\n", q, val);
    }
    core->qtx_comm_dbell[q] = val;
}

void e810_txq_reset(E810Core *core)
{
    memset(core->qtx_comm_dbell, 0, sizeof(core->qtx_comm_dbell));
    memset(core->qtx_comm_head, 0, sizeof(core->qtx_comm_head));
    memset(core->txq_enabled, 0, sizeof(core->txq_enabled));
    memset(core->txq_teid, 0, sizeof(core->txq_teid));
    memset(core->txq_ctx, 0, sizeof(core->txq_ctx));
}

/*
 * QEMU Intel E810 ("ice") Ethernet controller: BAR0 register map
 *
 * Every name below is spelt exactly as in the Linux driver's
 * drivers/net/ethernet/intel/ice/ice_hw_autogen.h (or, for the few
 * registers the driver only names in code, as in that code), so a reader
 * can grep both trees.  Only registers the model gives meaning to are
 * listed; everything else in BAR0 reads 0 and ignores writes.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#ifndef HW_NET_E810_REGS_H
#define HW_NET_E810_REGS_H

#define E810_BIT(n)                     (1U << (n))

/* Admin queue (PF <-> firmware) */
#define PF_FW_ATQBAL                    0x00080000
#define PF_FW_ARQBAL                    0x00080080
#define PF_FW_ATQBAH                    0x00080100
#define PF_FW_ARQBAH                    0x00080180
#define PF_FW_ATQLEN                    0x00080200
#define PF_FW_ARQLEN                    0x00080280
#define PF_FW_ATQH                      0x00080300
#define PF_FW_ARQH                      0x00080380
#define PF_FW_ATQT                      0x00080400
#define PF_FW_ARQT                      0x00080480
#define PF_FW_ATQLEN_ATQLEN_M           0x3FF
#define PF_FW_ATQLEN_ATQVFE_M           E810_BIT(28)
#define PF_FW_ATQLEN_ATQOVFL_M          E810_BIT(29)
#define PF_FW_ATQLEN_ATQCRIT_M          E810_BIT(30)
#define PF_FW_ATQLEN_ATQENABLE_M        E810_BIT(31)
#define PF_FW_ATQH_ATQH_M               0x3FF
#define PF_FW_ARQH_ARQH_M               0x3FF

/* Mailbox (PF <-> VFs): storage only, no VFs are modelled */
#define PF_MBX_ATQBAL                   0x0022E100
#define PF_MBX_ATQBAH                   0x0022E180
#define PF_MBX_ATQLEN                   0x0022E200
#define PF_MBX_ATQH                     0x0022E280
#define PF_MBX_ATQT                     0x0022E300
#define PF_MBX_ARQBAL                   0x0022E380
#define PF_MBX_ARQBAH                   0x0022E400
#define PF_MBX_ARQLEN                   0x0022E480
#define PF_MBX_ARQH                     0x0022E500
#define PF_MBX_ARQT                     0x0022E580

/* Reset, function identity and firmware state */
#define PF_FUNC_RID                     0x0009E880
#define PF_FUNC_RID_FUNC_NUM_M          0x7
#define GLGEN_RSTCTL                    0x000B8180
#define GLGEN_RSTCTL_GRSTDEL_M          0x3F
#define GLGEN_RSTAT                     0x000B8188
#define GLGEN_RSTAT_DEVSTATE_M          0x3
#define GLGEN_RSTAT_RESET_TYPE_S        2
#define GLGEN_RSTAT_RESET_TYPE_M        (0x3 << 2)
#define GLGEN_RTRIG                     0x000B8190
#define GLGEN_RTRIG_CORER_M             E810_BIT(0)
#define GLGEN_RTRIG_GLOBR_M             E810_BIT(1)
#define GLGEN_STAT                      0x000B612C
#define PFGEN_CTRL                      0x00091000
#define PFGEN_CTRL_PFSWR_M              E810_BIT(0)
#define PRTDCB_GENS                     0x00083020
#define PRTDCB_GENS_DCBX_STATUS_IN_PROGRESS 1
#define PFGEN_STATE                     0x00088000
#define GL_PWR_MODE_CTL                 0x000B820C
#define GL_PWR_MODE_CTL_CAR_MAX_BW_S    30
#define GLGEN_CLKSTAT_SRC               0x000B826C
#define GL_MNG_FWSM                     0x000B6134
#define GL_MNG_FWSM_FW_LOADING_M        E810_BIT(30)
#define GLPCI_CNF2                      0x000BE004
#define GLPCI_CNF2_CACHELINE_SIZE_M     E810_BIT(1)
#define PFPM_WUS                        0x0009DB80
#define PFPM_WUFC                       0x0009DC00
#define PFPM_APM                        0x000B8080
#define PRTDCB_TUP2TC                   0x001D26C0
#define GL_MDCK_TX_TDPU                 0x00049348
#define PFQF_FD_ENA                     0x0043A000
#define GLQF_FD_SIZE                    0x00460010
#define GLQF_FD_CNT                     0x00460018
#define PFQF_FD_SIZE                    0x00460100
#define VSIQF_FD_CNT(_VSI)              (0x00464000 + ((_VSI) * 4))

/* NVM */
#define GLNVM_ULD                       0x000B6008
#define GLNVM_ULD_PCIER_DONE_M          E810_BIT(0)
#define GLNVM_ULD_PCIER_DONE_1_M        E810_BIT(1)
#define GLNVM_ULD_CORER_DONE_M          E810_BIT(3)
#define GLNVM_ULD_GLOBR_DONE_M          E810_BIT(4)
#define GLNVM_ULD_POR_DONE_M            E810_BIT(5)
#define GLNVM_ULD_POR_DONE_1_M          E810_BIT(8)
#define GLNVM_ULD_PCIER_DONE_2_M        E810_BIT(9)
#define GLNVM_ULD_PE_DONE_M             E810_BIT(10)
/* every domain done: out of reset */
#define E810_GLNVM_ULD_ALL_DONE         (GLNVM_ULD_PCIER_DONE_M |       \
                                         GLNVM_ULD_PCIER_DONE_1_M |     \
                                         GLNVM_ULD_CORER_DONE_M |       \
                                         GLNVM_ULD_GLOBR_DONE_M |       \
                                         GLNVM_ULD_POR_DONE_M |         \
                                         GLNVM_ULD_POR_DONE_1_M |       \
                                         GLNVM_ULD_PCIER_DONE_2_M |     \
                                         GLNVM_ULD_PE_DONE_M)
#define GLNVM_GENS                      0x000B6100
#define GLNVM_GENS_SR_SIZE_S            5
#define GLNVM_FLA                       0x000B6108
#define GLNVM_FLA_LOCKED_M              E810_BIT(6)

/* MAC: read before 0x0603 set_mac_cfg (ice_fill_tx_timer_and_fc_thresh) */
#define E800_PRTMAC_HSEC_CTL_TX_PS_QNT(_i)      (0x001E36E0 + ((_i) * 32))
#define E800_PRTMAC_HSEC_CTL_TX_PS_RFSH_TMR(_i) (0x001E3800 + ((_i) * 32))

/* Interrupts */
#define GLINT_CTL                       0x0016CC54
#define GLINT_CTL_DIS_AUTOMASK_M        E810_BIT(0)
#define GLINT_DYN_CTL(_INT)             (0x00160000 + ((_INT) * 4))
#define GLINT_DYN_CTL_INTENA_M          E810_BIT(0)
#define GLINT_DYN_CTL_CLEARPBA_M        E810_BIT(1)
#define GLINT_DYN_CTL_SWINT_TRIG_M      E810_BIT(2)
#define GLINT_DYN_CTL_WB_ON_ITR_M       E810_BIT(30)
#define GLINT_DYN_CTL_INTENA_MSK_M      E810_BIT(31)
#define GLINT_ITR(_i, _INT) \
    (0x00154000 + ((_i) * 8192 + (_INT) * 4))
#define GLINT_RATE(_INT)                (0x0015A000 + ((_INT) * 4))
#define GLINT_VECT2FUNC(_INT)           (0x00162000 + ((_INT) * 4))
#define PFINT_ALLOC                     0x001D2600
#define PFINT_FW_CTL                    0x0016C800
#define PFINT_FW_CTL_MSIX_INDX_M        0x7FF
#define PFINT_FW_CTL_CAUSE_ENA_M        E810_BIT(30)
#define PFINT_MBX_CTL                   0x0016B280
#define PFINT_SB_CTL                    0x0016B600
#define PFINT_OICR                      0x0016CA00
#define PFINT_OICR_ECC_ERR_M            E810_BIT(16)
#define PFINT_OICR_MAL_DETECT_M         E810_BIT(19)
#define PFINT_OICR_GRST_M               E810_BIT(20)
#define PFINT_OICR_PCI_EXCEPTION_M      E810_BIT(21)
#define PFINT_OICR_SWINT_M              E810_BIT(31)
#define PFINT_OICR_CTL                  0x0016CA80
#define PFINT_OICR_CTL_MSIX_INDX_M      0x7FF
#define PFINT_OICR_CTL_CAUSE_ENA_M      E810_BIT(30)
#define PFINT_OICR_ENA                  0x0016C900
#define PFINT_TSYN_MSK                  0x0016C980
#define QINT_RQCTL(_QRX)                (0x00150000 + ((_QRX) * 4))
#define QINT_RQCTL_MSIX_INDX_M          0x7FF
#define QINT_RQCTL_CAUSE_ENA_M          E810_BIT(30)
#define QINT_TQCTL(_DBQM)               (0x00140000 + ((_DBQM) * 4))
#define QINT_TQCTL_MSIX_INDX_M          0x7FF
#define QINT_TQCTL_CAUSE_ENA_M          E810_BIT(30)

/* LAN Rx queues */
#define QRX_CONTEXT(_i, _QRX) \
    (0x00280000 + ((_i) * 8192 + (_QRX) * 4))
#define QRX_CTRL(_QRX)                  (0x00120000 + ((_QRX) * 4))
#define QRX_CTRL_MAX_INDEX              2047
#define QRX_CTRL_QENA_REQ_M             E810_BIT(0)
#define QRX_CTRL_QENA_STAT_M            E810_BIT(2)
#define QRX_TAIL(_QRX)                  (0x00290000 + ((_QRX) * 4))
#define QRX_TAIL_TAIL_M                 0x1FFF
#define QRX_ITR(_QRX)                   (0x00292000 + ((_QRX) * 4))
#define QRXFLXP_CNTXT(_QRX)             (0x00480000 + ((_QRX) * 4))

/* LAN Tx queues */
#define QTX_COMM_DBELL(_DBQM)           (0x002C0000 + ((_DBQM) * 4))
#define QTX_COMM_HEAD(_DBQM)            (0x000E0000 + ((_DBQM) * 4))
#define QTX_COMM_HEAD_HEAD_M            0x1FFF

/* Package-dependent parser registers written after a DDP download */
#define GL_PREEXT_L2_PMASK0(_i)         (0x0020F0FC + ((_i) * 4))
#define GL_PREEXT_L2_PMASK1(_i)         (0x0020F108 + ((_i) * 4))

/* Flow-engine masks (written at init by ice_flex_pipe.c) */
#define GLQF_HSYMM(_i, _j)              (0x0040F000 + ((_i) * 4 + (_j) * 512))
#define GLQF_HMASK(_i)                  (0x0040FC00 + ((_i) * 4))
#define GLQF_HMASK_MAX_INDEX            31
#define GLQF_HMASK_SEL(_i)              (0x00410000 + ((_i) * 4))
#define GLQF_HMASK_SEL_MAX_INDEX        127
#define GLQF_FDMASK_SEL(_i)             (0x00410400 + ((_i) * 4))
#define GLQF_FDMASK(_i)                 (0x00410800 + ((_i) * 4))
#define GLQF_FDMASK_MAX_INDEX           31
#define GLQF_FDINSET(_i, _j)            (0x00412000 + ((_i) * 4 + (_j) * 512))
#define GLQF_FDSWAP(_i, _j)             (0x00413000 + ((_i) * 4 + (_j) * 512))

/* Statistics (counters; the model keeps them at zero for now) */
#define GLPRT_GORCL(_i)                 (0x00380000 + ((_i) * 8))
#define GLSTAT_FD_CNT0L(_i)             (0x003A0000 + ((_i) * 8))
#define GLV_GOTCL(_i)                   (0x00300000 + ((_i) * 8))
#define GLV_UPTCL(_i)                   (0x0030A000 + ((_i) * 8))
#define GLV_MPTCL(_i)                   (0x0030C000 + ((_i) * 8))
#define GLV_BPTCL(_i)                   (0x0030E000 + ((_i) * 8))
#define GLV_TEPC(_VSI)                  (0x00312000 + ((_VSI) * 4))
#define GLV_GORCL(_i)                   (0x003B0000 + ((_i) * 8))
#define GLV_UPRCL(_i)                   (0x003B2000 + ((_i) * 8))
#define GLV_MPRCL(_i)                   (0x003B4000 + ((_i) * 8))
#define GLV_BPRCL(_i)                   (0x003B6000 + ((_i) * 8))
#define GLV_RDPC(_i)                    (0x00294C04 + ((_i) * 4))
#define PRTRPB_RDPC                     0x000AC260

#endif

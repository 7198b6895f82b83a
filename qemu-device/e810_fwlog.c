/*
 * QEMU Intel E810 ("ice") Ethernet controller: firmware logging
 *
 * The firmware keeps a log level per module (enum ice_aqc_fw_logging_mod,
 * ICE_AQC_FW_LOG_ID_MAX of them), a resolution (messages per ARQ event)
 * and whether it logs to the UART and/or the ARQ; a PF registers for the
 * ARQ events.  0xFF32 reports all of it (ice_fwlog_set_supported() and
 * ice_fwlog_get() at probe: firmware logging is "supported" when it
 * answers), 0xFF30 sets levels/resolution/destinations, 0xFF31 registers
 * or unregisters.  The model's firmware has nothing to log: no 0xFF33
 * event is ever posted, whatever is enabled.  The configuration survives
 * PF and core resets and goes with a device reset.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */

#include "qemu/osdep.h"
#include "qemu/log.h"
#include "e810_core.h"
#include "e810_adminq.h"
#include "trace.h"

QEMU_BUILD_BUG_ON(E810_FWLOG_MODULES != ICE_AQC_FW_LOG_ID_MAX);
QEMU_BUILD_BUG_ON(E810_FWLOG_LEVELS != ICE_FWLOG_LEVEL_INVALID);

/* 0xFF32 query: the configuration, one entry per module */
uint16_t e810_aq_fwlog_query(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_fw_log *p = &cmd->params.fw_log;
    struct ice_aqc_fw_log_cfg_resp *e = (void *)cmd->buf;
    E810FwLog *f = &core->fwlog;
    uint8_t flags = 0;

    if (!e810_aq_need_buf(cmd, sizeof(*e) * ICE_AQC_FW_LOG_ID_MAX)) {
        return ICE_AQ_RC_EINVAL;
    }
    for (int i = 0; i < ICE_AQC_FW_LOG_ID_MAX; i++) {
        e[i] = (struct ice_aqc_fw_log_cfg_resp) {
            .module_identifier = cpu_to_le16(i),
            .log_level = f->level[i],
        };
    }
    if (f->uart_en) {
        flags |= ICE_AQC_FW_LOG_CONF_UART_EN;
    }
    if (f->aq_en) {
        flags |= ICE_AQC_FW_LOG_CONF_AQ_EN;
    }
    if (f->registered) {
        flags |= ICE_AQC_FW_LOG_QUERY_REGISTERED;
    }
    p->cmd_flags = flags;
    p->ops.cfg.log_resolution = cpu_to_le16(f->resolution);
    p->ops.cfg.mdl_cnt = cpu_to_le16(ICE_AQC_FW_LOG_ID_MAX);
    cmd->resp_len = sizeof(*e) * ICE_AQC_FW_LOG_ID_MAX;
    trace_e810_fwlog(cmd->opcode, flags, f->resolution, ICE_AQC_FW_LOG_ID_MAX);
    return ICE_AQ_RC_OK;
}

/*
 * 0xFF30 config (ice_aq_fwlog_set()): with SET_VALID, mdl_cnt entries
 * {module, level} in the RD buffer and the resolution; UART_EN/AQ_EN set
 * the destinations either way.  Checked before anything is applied: a
 * module id or level out of range, a resolution outside 1..128, more
 * entries than modules or than the buffer holds are EINVAL.
 */
uint16_t e810_aq_fwlog_config(E810Core *core, E810AqCmd *cmd)
{
    struct ice_aqc_fw_log *p = &cmd->params.fw_log;
    const struct ice_aqc_fw_log_cfg_resp *e = (const void *)cmd->buf;
    E810FwLog *f = &core->fwlog;
    uint8_t flags = p->cmd_flags;
    uint16_t res = le16_to_cpu(p->ops.cfg.log_resolution);
    uint16_t cnt = le16_to_cpu(p->ops.cfg.mdl_cnt);

    trace_e810_fwlog(cmd->opcode, flags, res, cnt);
    if (flags & ICE_AQC_FW_LOG_CONF_SET_VALID) {
        if (res < ICE_AQC_FW_LOG_MIN_RESOLUTION ||
            res > ICE_AQC_FW_LOG_MAX_RESOLUTION) {
            qemu_log_mask(LOG_GUEST_ERROR, "e810: FW log resolution %u\n",
                          res);
            return ICE_AQ_RC_EINVAL;
        }
        if (cnt > ICE_AQC_FW_LOG_ID_MAX ||
            (cnt && !e810_aq_need_buf(cmd, cnt * sizeof(*e)))) {
            qemu_log_mask(LOG_GUEST_ERROR, "e810: FW log config of %u "
                          "modules\n", cnt);
            return ICE_AQ_RC_EINVAL;
        }
        for (uint16_t i = 0; i < cnt; i++) {
            if (le16_to_cpu(e[i].module_identifier) >= ICE_AQC_FW_LOG_ID_MAX ||
                e[i].log_level >= ICE_FWLOG_LEVEL_INVALID) {
                qemu_log_mask(LOG_GUEST_ERROR, "e810: FW log module %u "
                              "level %u\n",
                              le16_to_cpu(e[i].module_identifier),
                              e[i].log_level);
                return ICE_AQ_RC_EINVAL;
            }
        }
        for (uint16_t i = 0; i < cnt; i++) {
            f->level[le16_to_cpu(e[i].module_identifier)] = e[i].log_level;
        }
        f->resolution = res;
    }
    f->uart_en = flags & ICE_AQC_FW_LOG_CONF_UART_EN;
    f->aq_en = flags & ICE_AQC_FW_LOG_CONF_AQ_EN;
    return ICE_AQ_RC_OK;
}

/* 0xFF31 register (AQ_REGISTER) / unregister (0) for the ARQ events */
uint16_t e810_aq_fwlog_register(E810Core *core, E810AqCmd *cmd)
{
    uint8_t flags = cmd->params.fw_log.cmd_flags;

    trace_e810_fwlog(cmd->opcode, flags, 0, 0);
    if (flags & ~ICE_AQC_FW_LOG_AQ_REGISTER) {
        qemu_log_mask(LOG_GUEST_ERROR, "e810: FW log register flags 0x%x\n",
                      flags);
        return ICE_AQ_RC_EINVAL;
    }
    core->fwlog.registered = flags & ICE_AQC_FW_LOG_AQ_REGISTER;
    return ICE_AQ_RC_OK;
}

/* firmware's defaults: nothing logged anywhere, resolution 10 */
void e810_fwlog_reset(E810Core *core)
{
    memset(&core->fwlog, 0, sizeof(core->fwlog));
    core->fwlog.resolution = E810_FWLOG_DEFAULT_RESOLUTION;
}

bool e810_fwlog_is_default(E810Core *core)
{
    const E810FwLog *f = &core->fwlog;

    for (int i = 0; i < E810_FWLOG_MODULES; i++) {
        if (f->level[i] != ICE_FWLOG_LEVEL_NONE) {
            return false;
        }
    }
    return f->resolution == E810_FWLOG_DEFAULT_RESOLUTION &&
           !f->uart_en && !f->aq_en && !f->registered;
}

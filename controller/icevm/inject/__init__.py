"""Fault injection: host-side (a call inside the driver fails, through QEMU's gdbstub, at a
call site read from the guest's own ice.ko) and device-side (the e810 misbehaves, over QMP).
"""

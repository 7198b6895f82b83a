"""The VM: QEMU's command line, the accelerator, the running VM (QMP, agent, console, netdev
wired together) and its saved states.
"""

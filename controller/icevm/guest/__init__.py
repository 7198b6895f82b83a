"""What runs inside the guest and how its answers are read: the guest agent, the serial console
and its complaint scanner, /proc/interrupts, and the probe scripts.
"""

"""icevm: an emulated Intel E810 NIC in QEMU and an asyncio control plane around it."""

__version__ = "0.1.0"

"""Builders: QEMU with the e810 from Debian's source package, the guest images from pinned Debian
packages, and Debian's ice.ko rebuilt with a patch. ``python -m icevm.build TARGET``.

The runtime never imports this package: it looks artefacts up in :mod:`icevm.artifacts`.
"""

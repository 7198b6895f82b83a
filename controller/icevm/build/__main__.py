"""``python -m icevm.build TARGET``: what the Makefile's build targets run.

TARGET is ``deps``, ``qemu``, ``qemu-asan``, ``guest [VARIANT…] [--kernel K[,K…]] [--repin]``
(K: a Debian suite or release, or a path; default ``$ICEVM_KERNEL``, else the default kernel),
``all`` (:mod:`icevm.build.qemu`)
or ``patched-module [build|lock|path] [--force] [--guest V]`` (:mod:`icevm.build.module_build`).
"""

from __future__ import annotations

import sys

from icevm.build import module_build, qemu


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] == "patched-module":
        return module_build.main(args[1:])
    return qemu.main(args)


if __name__ == "__main__":
    sys.exit(main())

"""The catalogue of failable callees: which kernel functions a driver calls may fail, and how.

A sweep fails the calls a driver makes one at a time, so it needs to know, for each callee,
whether a failure is possible on a real machine and what the caller then sees. The anchor is
the kernel's own fault-injection framework (Linux 6.12, ``include/asm-generic/error-injection.h``,
``lib/error-inject.c``, ``kernel/fail_function.c``), read from Debian's ``linux-source-6.12``:

* ``ALLOW_ERROR_INJECTION(fn, TYPE)`` marks the functions fail_function may fail, with the
  value class it may return: ``ERRNO`` (``-MAX_ERRNO..-1``), ``NULL`` (0), ``ERRNO_NULL``
  (either), ``TRUE`` (1). The annotations that matter to a NIC driver in 6.12 are three:
  ``should_failslab`` (``mm/failslab.c``, ERRNO: the slab allocators then return NULL, which
  is how failslab fails the whole kmalloc family), ``should_fail_alloc_page``
  (``mm/fail_page_alloc.c``, TRUE: the page allocator returns NULL, and so do vmalloc and
  the DMA allocators built on it), and ``page_pool_alloc_pages`` (``net/core/page_pool.c``,
  NULL). So every allocator below fails as **NULL** (:data:`NULL`), exactly as failslab and
  fail_page_alloc make it fail; none of them returns an errno.
* fail_function's rule for the rest: a function may be failed with a value its callers must
  already handle, i.e. one its own code returns. The other callees are not annotated (6.12
  annotates syscalls, btrfs, bio and a few drivers' hooks), so their failure value is taken from
  their source: ``request_threaded_irq``/``devm_request_threaded_irq`` return ``-EBUSY`` when
  the line is taken (``__setup_irq``) and ``-ENOMEM``; ``pci_alloc_irq_vectors_affinity``
  ``-ENOSPC``; ``irq_cpu_rmap_add`` ``-ENOMEM``; ``__xdp_rxq_info_reg`` and
  ``xdp_rxq_info_reg_mem_model`` ``-ENOMEM``; ``register_netdev`` ``-ENOMEM`` (its
  ``netdev_register_kobject``); ``request_firmware`` ``-ENOENT``; the xarray/idr allocators
  ``-ENOMEM``/``-EBUSY``/``-ENOSPC``; ``netif_set_real_num_*_queues`` ``-ENOMEM``. These are
  :data:`ERRNO`. Functions returning ``ERR_PTR`` (``kthread_create_worker``,
  ``ptp_clock_register``, ``hwmon_device_register_with_info``) are :data:`ERR_PTR`: the
  register holds ``-errno`` as a pointer, which ``IS_ERR`` sees.

The kernel's spelling of the allocators is its own: 6.12's allocation profiling renamed the
kmalloc family (``__kmalloc_noprof``, ``__kmalloc_cache_noprof`` — 6.10's
``kmalloc_trace_noprof`` —, ``__kmalloc_node_noprof``, ``kvmalloc_node_noprof``…), so both
spellings, the older ones (6.1's ``__kmalloc``, ``kmalloc_trace``) and the newer ones (7.3's
``krealloc_node_align_noprof``, ``alloc_workqueue_noprof``, page pool's ``*_netmem(s)``, the
core's ``netif_enable_cpu_rmap`` that replaced the driver's own rmap calls) are listed; what a given
``ice.ko`` calls is read from its relocations (:func:`failable_sites`).

Left out on purpose: ``pci_msix_alloc_irq_at`` returns a ``struct msi_map`` by value (its
failure is ``index < 0`` in a register pair, not a plain return), and calls made from NAPI and
interrupt context are in the catalogue but only swept when the operation reaches them.
"""

from __future__ import annotations

import errno as errno_mod
from collections.abc import Iterable
from dataclasses import dataclass

from icevm.inject.symbols import CallSite, ModuleElf

#: How a callee fails: returns NULL, returns ``-errno``, or returns ``ERR_PTR(-errno)``; or
#: (``AQ``) the device answers the admin-queue command with an error code.
NULL = "null"
ERRNO = "errno"
ERR_PTR = "err-ptr"
AQ = "aq"
KINDS = (NULL, ERRNO, ERR_PTR, AQ)

_SLAB = "failslab: ALLOW_ERROR_INJECTION(should_failslab, ERRNO) (mm/failslab.c) -> NULL"
_PAGE = ("fail_page_alloc: ALLOW_ERROR_INJECTION(should_fail_alloc_page, TRUE) "
         "(mm/fail_page_alloc.c) -> NULL")
_POOL = "ALLOW_ERROR_INJECTION(page_pool_alloc_pages, NULL) (net/core/page_pool.c)"


@dataclass(frozen=True)
class Failable:
    """A callee that may fail, how, and where that rule comes from."""

    callee: str  # the symbol a module's relocation names
    fails: str  # NULL, ERRNO or ERR_PTR
    errno: int | None  # the errno returned (ERRNO, ERR_PTR); None for NULL
    anchor: str  # what in the kernel source says it can fail so

    @property
    def result(self) -> str:
        """``NULL``, ``-ENOMEM``, ``ERR_PTR(-ENOMEM)``."""
        if self.fails == AQ:
            return f"AQ error {self.errno}"
        if self.fails == NULL or self.errno is None:
            return "NULL"
        name = errno_mod.errorcode.get(self.errno, str(self.errno))
        return f"-{name}" if self.fails == ERRNO else f"ERR_PTR(-{name})"

    def rax(self, errno: int | None = None) -> int:
        """The value the failed call leaves in ``rax`` (64-bit two's complement); ``errno``
        overrides the catalogue's."""
        if self.fails == NULL:
            return 0
        if self.fails == AQ:
            raise ValueError(f"{self.callee}: an admin-queue failure is the device's answer, "
                             "not a return value")
        e = errno if errno is not None else self.errno
        if e is None or e <= 0:
            raise ValueError(f"{self.callee}: an errno > 0 is needed, not {e}")
        return (-e) & 0xFFFF_FFFF_FFFF_FFFF


def _entries() -> list[Failable]:
    E = errno_mod
    out: list[Failable] = []

    def null(anchor: str, *names: str) -> None:
        out.extend(Failable(n, NULL, None, anchor) for n in names)

    def err(e: int, anchor: str, *names: str) -> None:
        out.extend(Failable(n, ERRNO, e, anchor) for n in names)

    def errptr(e: int, anchor: str, *names: str) -> None:
        out.extend(Failable(n, ERR_PTR, e, anchor) for n in names)

    null(_SLAB, "__kmalloc_noprof", "__kmalloc_cache_noprof", "kmalloc_trace_noprof",
         "__kmalloc_node_noprof", "__kmalloc_cache_node_noprof", "__kmalloc_large_noprof",
         "__kmalloc_large_node_noprof", "kmem_cache_alloc_noprof", "krealloc_noprof",
         "kmemdup_noprof", "kstrdup", "kstrdup_const", "kvmalloc_node_noprof",
         "__kvmalloc_node_noprof", "devm_kmalloc", "devm_kmemdup", "devm_kstrdup",
         "bitmap_zalloc", "bitmap_alloc", "memdup_user_nul", "pcpu_alloc_noprof",
         "alloc_cpu_rmap", "__kmalloc", "kmalloc_trace", "__kmalloc_node", "kvmalloc_node",
         "kmemdup", "krealloc", "krealloc_node_align_noprof", "devlink_alloc_ns",
         "gnss_allocate_device")
    null(_PAGE, "__alloc_pages_noprof", "alloc_pages_noprof", "__get_free_pages",
         "get_zeroed_page", "vzalloc_noprof", "vmalloc_noprof", "vzalloc", "vmalloc",
         "dma_alloc_attrs", "dmam_alloc_attrs", "__alloc_pages", "alloc_etherdev_mqs",
         "alloc_workqueue", "alloc_workqueue_noprof", "napi_alloc_skb", "__napi_alloc_skb",
         "__netdev_alloc_skb",
         "metadata_dst_alloc")
    null(_POOL, "page_pool_alloc_pages")
    null("page_pool_alloc_pages (annotated NULL) returns what this returns: 0 when the pool "
         "and the page allocator are empty (net/core/page_pool.c)", "page_pool_alloc_netmems",
         "page_pool_alloc_frag_netmem")
    src = "returns -{0} on failure ({1})"
    err(E.EBUSY, src.format("EBUSY", "kernel/irq/manage.c: __setup_irq, line taken"),
        "request_threaded_irq", "devm_request_threaded_irq")
    err(E.ENOSPC, src.format("ENOSPC", "drivers/pci/msi/api.c"),
        "pci_alloc_irq_vectors_affinity", "pci_alloc_irq_vectors")
    err(E.ENOMEM, src.format("ENOMEM", "lib/cpu_rmap.c: its kzalloc"), "irq_cpu_rmap_add")
    err(E.ENOMEM, src.format("ENOMEM", "net/core/dev.c: its alloc_irq_cpu_rmap"),
        "netif_enable_cpu_rmap")
    err(E.ENOMEM, src.format("ENOMEM", "drivers/net/ethernet/intel/libeth/rx.c"),
        "libeth_rx_fq_create")
    err(E.ENOMEM, src.format("ENOMEM", "net/core/xdp.c"), "__xdp_rxq_info_reg",
        "xdp_rxq_info_reg", "xdp_rxq_info_reg_mem_model")
    err(E.ENOMEM, src.format("ENOMEM", "net/core/dev.c: register_netdevice"),
        "register_netdev", "register_netdevice")
    err(E.ENOMEM, src.format("ENOMEM", "net/core/dev.c: netif_set_real_num_*_queues"),
        "netif_set_real_num_tx_queues", "netif_set_real_num_rx_queues",
        "netif_set_real_num_queues")
    err(E.ENOENT, src.format("ENOENT", "drivers/base/firmware_loader/main.c"),
        "request_firmware", "firmware_request_nowarn", "request_firmware_direct")
    err(E.ENOMEM, src.format("ENOMEM", "lib/xarray.c, lib/idr.c"), "__xa_alloc",
        "__xa_alloc_cyclic", "__xa_insert", "idr_alloc", "idr_alloc_cyclic", "ida_alloc_range")
    err(E.ENOMEM, src.format("ENOMEM", "lib/rhashtable.c"), "rhashtable_init_noprof",
        "__rhashtable_init_noprof", "rhashtable_init")
    err(E.ENOMEM, src.format("ENOMEM", "drivers/base/auxiliary.c"), "__auxiliary_device_add",
        "auxiliary_device_init")
    err(E.ENOMEM, src.format("ENOMEM", "net/devlink"), "devl_port_register_with_ops",
        "devl_params_register", "devl_rate_leaf_create")
    err(E.ENOMEM, src.format("ENOMEM", "drivers/pci/pci.c: pci_enable_device_flags"),
        "pci_enable_device_mem", "pcim_enable_device")
    err(E.ENOMEM, src.format("ENOMEM", "drivers/pci/devres.c"), "pcim_iomap_regions")
    err(E.ENOMEM, src.format("ENOMEM", "drivers/dpll/dpll_core.c"), "dpll_device_register",
        "dpll_pin_register", "dpll_pin_on_pin_register")
    err(E.ENOMEM, src.format("ENOMEM", "drivers/gnss/core.c"), "gnss_register_device")
    errptr(E.ENOMEM, "returns ERR_PTR(-ENOMEM) (kernel/kthread.c)", "kthread_create_worker",
           "kthread_create_worker_on_cpu", "kthread_create_worker_on_node")
    errptr(E.ENOMEM, "returns ERR_PTR(-ENOMEM) (drivers/ptp/ptp_clock.c)",
           "ptp_clock_register")
    errptr(E.ENOMEM, "returns ERR_PTR(-ENOMEM) (drivers/hwmon/hwmon.c)",
           "hwmon_device_register_with_info")
    errptr(E.ENOMEM, "returns ERR_PTR(-ENOMEM) (net/core/page_pool.c)", "page_pool_create")
    return out


#: Every failable callee by symbol name.
CATALOGUE: dict[str, Failable] = {f.callee: f for f in _entries()}


def lookup(callee: str) -> Failable | None:
    return CATALOGUE.get(callee)


@dataclass(frozen=True)
class FailableSite:
    """A call instruction in a module whose callee is in the catalogue."""

    site: CallSite
    failable: Failable

    @property
    def name(self) -> str:
        """``ice_vsi_req_irq_msix+0x6d``: how ``--site`` names it."""
        return f"{self.site.function}+{self.site.function_offset:#x}"

    @property
    def callee(self) -> str:
        return self.failable.callee


def failable_sites(elf: ModuleElf, *, callees: Iterable[str] | None = None
                   ) -> list[FailableSite]:
    """Every direct call (not a tail call: a ``jmp`` cannot be skipped like a call) in ``elf``
    to a catalogue callee, in section and address order; ``callees`` narrows the callees."""
    want = set(callees) if callees is not None else None
    out: list[FailableSite] = []
    seen: set[tuple[str, int]] = set()
    for s in elf.every_call_site():
        f = CATALOGUE.get(s.callee)
        if f is None or s.kind != "call" or (want is not None and s.callee not in want):
            continue
        if (s.section, s.offset) in seen:  # an alias of the same function
            continue
        seen.add((s.section, s.offset))
        out.append(FailableSite(s, f))
    out.sort(key=lambda f: (f.site.section, f.site.offset))
    return out


def parse_site(text: str) -> tuple[str, int]:
    """``ice_vsi_req_irq_msix+0x6d`` → (function, offset); ValueError otherwise."""
    func, sep, off = text.strip().rpartition("+")
    if not sep or not func:
        raise ValueError(f"site {text!r} is not FUNCTION+0xOFFSET")
    return func, int(off, 0)

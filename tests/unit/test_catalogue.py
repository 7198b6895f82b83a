"""The catalogue of failable callees, and finding their call sites in the real ice.ko."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from icevm.inject import catalogue
from icevm.inject.catalogue import CATALOGUE, ERR_PTR, ERRNO, KINDS, NULL, Failable
from icevm.inject.symbols import ModuleElf


def test_every_entry_says_how_it_fails_and_why() -> None:
    assert len(CATALOGUE) > 60
    for name, f in CATALOGUE.items():
        assert f.callee == name and f.fails in KINDS and f.anchor
        if f.fails == NULL:
            assert f.errno is None and f.result == "NULL" and f.rax() == 0
        else:
            assert f.errno is not None and f.errno > 0


def test_allocators_fail_with_null_as_failslab_makes_them() -> None:
    for name in ("__kmalloc_noprof", "__kmalloc_cache_noprof", "kmalloc_trace_noprof",
                 "devm_kmalloc", "kvmalloc_node_noprof", "kmemdup_noprof",
                 "dma_alloc_attrs", "dmam_alloc_attrs", "page_pool_alloc_pages",
                 "__alloc_pages_noprof"):
        assert CATALOGUE[name].fails == NULL, name
    assert "should_failslab" in CATALOGUE["devm_kmalloc"].anchor
    assert "ALLOW_ERROR_INJECTION(page_pool_alloc_pages, NULL)" in \
        CATALOGUE["page_pool_alloc_pages"].anchor


def test_errno_callees_and_their_register_values() -> None:
    irq = CATALOGUE["devm_request_threaded_irq"]
    assert (irq.fails, irq.errno, irq.result) == (ERRNO, errno.EBUSY, "-EBUSY")
    assert irq.rax() == 2**64 - errno.EBUSY
    assert irq.rax(errno.ENOMEM) == 2**64 - errno.ENOMEM
    for name in ("request_threaded_irq", "pci_alloc_irq_vectors_affinity", "irq_cpu_rmap_add",
                 "__xdp_rxq_info_reg", "register_netdev", "request_firmware"):
        assert CATALOGUE[name].fails == ERRNO, name
    kw = CATALOGUE["kthread_create_worker"]
    assert kw.fails == ERR_PTR and kw.result == "ERR_PTR(-ENOMEM)"
    with pytest.raises(ValueError, match="errno > 0"):
        Failable("x", ERRNO, None, "test").rax()


def test_each_kernels_spelling_is_listed() -> None:
    """What the three pinned kernels' ice.ko import (``nm -u``): 6.1's names, 6.12's
    ``_noprof`` family, 7.3's ``krealloc_node_align_noprof``, page pool's netmem allocators
    and the core's rmap that replaced the driver's own ``irq_cpu_rmap_add``."""
    for name in ("__kmalloc", "kmalloc_trace", "krealloc_noprof", "krealloc_node_align_noprof",
                 "alloc_workqueue_noprof", "page_pool_alloc_netmems", "devlink_alloc_ns"):
        assert CATALOGUE[name].fails == NULL, name
    for name in ("netif_enable_cpu_rmap", "libeth_rx_fq_create"):
        assert CATALOGUE[name].result == "-ENOMEM", name
    assert CATALOGUE["kthread_create_worker_on_node"].fails == ERR_PTR


def test_parse_site() -> None:
    assert catalogue.parse_site("ice_vsi_req_irq_msix+0x6d") == ("ice_vsi_req_irq_msix", 0x6D)
    assert catalogue.parse_site("ice_print_link_msg.part.0+0x129") == \
        ("ice_print_link_msg.part.0", 0x129)
    for bad in ("ice_vsi_req_irq_msix", "+0x6d", "f+zz"):
        with pytest.raises(ValueError):
            catalogue.parse_site(bad)


@pytest.fixture(scope="module")
def elf(stock_ice_ko: Path) -> ModuleElf:
    return ModuleElf(stock_ice_ko)


def test_failable_sites_of_the_real_ice_ko(elf: ModuleElf) -> None:
    sites = catalogue.failable_sites(elf)
    assert len(sites) > 300
    assert all(s.site.kind == "call" and s.callee in CATALOGUE for s in sites)
    assert len({(s.site.section, s.site.offset) for s in sites}) == len(sites)
    irq = [s.name for s in sites if s.callee == "devm_request_threaded_irq"]
    # the queue vectors' request (the unwind leak's site) and the misc vector's two
    assert "ice_vsi_req_irq_msix+0x6d" in irq
    assert sum(n.startswith("ice_req_irq_msix_misc+") for n in irq) == 2
    callees = {s.callee for s in sites}
    assert {"__kmalloc_cache_noprof", "devm_kmalloc", "dmam_alloc_attrs", "__xdp_rxq_info_reg",
            "irq_cpu_rmap_add", "register_netdev", "request_firmware"} <= callees
    only = catalogue.failable_sites(elf, callees=["irq_cpu_rmap_add"])
    assert [s.name for s in only] == ["ice_set_cpu_rx_rmap+0x97"]

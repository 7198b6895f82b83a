"""Fault specs: parsing, validation (one-line UsageErrors, exit 2), errno names; resolving each
site's call sites in the real ``ice.ko``; and the per-attempt matching that picks "vector k".

The resolution test checks against the runtime addresses of real runs: the records under
``data/faults/*/observation.json`` (safe guest, stock ice.ko, ``nokaslr``: ice's ``.text`` at
0xffffffffc020c000 in those boots).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import lzma
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from icevm import paths
from icevm.errors import UsageError
from icevm.inject.gdbstub import Hit
from icevm.inject.host import (
    MATRIX_ERRNOS,
    SITES,
    ArmedFault,
    FaultSpec,
    Target,
    check_vector,
    errno_name,
    find_target,
    make_spec,
    matrix_specs,
    parse_errno,
    parse_spec,
)
from icevm.inject.symbols import Kallsyms, ModuleElf

DATA = Path(__file__).parent / "data" / "faults"
RELEASE = "6.12.117+deb13-amd64"


# ------------------------------------------------------------------------------ errnos

@pytest.mark.parametrize(("text", "value"), [
    ("EBUSY", errno.EBUSY), ("ebusy", errno.EBUSY), ("-EBUSY", errno.EBUSY),
    ("ENOMEM", errno.ENOMEM), ("EINVAL", errno.EINVAL), ("16", 16), ("-12", 12),
    (errno.EIO, errno.EIO), ("EAGAIN", errno.EAGAIN), ("EWOULDBLOCK", errno.EAGAIN),
])
def test_parse_errno(text: str | int, value: int) -> None:
    assert parse_errno(text) == value


@pytest.mark.parametrize("text", ["EFOO", "BUSY", "", "-", "99999", "E", "busy"])
def test_unknown_errno_is_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError) as ei:
        parse_errno(text)
    assert ei.value.exit_code == 2
    assert "\n" not in str(ei.value) and "errno" in str(ei.value)


def test_errno_name() -> None:
    assert errno_name(16) == "EBUSY" and errno_name(12) == "ENOMEM"
    assert errno_name(100000) == "100000"


# ------------------------------------------------------------------------------ specs

def test_make_spec_defaults_per_site() -> None:
    assert make_spec("rmap") == FaultSpec("rmap", errno.ENOMEM, 0, 1)
    assert make_spec("misc") == FaultSpec("misc", errno.EBUSY, 0, 1)
    s = make_spec("request-irq", errno="EINVAL", vector=0, times=3)
    assert s == FaultSpec("request-irq", errno.EINVAL, 0, 3)
    assert s.errno_name == "EINVAL" and s.reported_errno == errno.EINVAL
    # ice_set_cpu_rx_rmap turns any failure into -EINVAL: that is what ip sees.
    assert make_spec("rmap").reported_errno == errno.EINVAL


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"site": "request_irq"}, "unknown fault site 'request_irq'"),
    ({"site": "request-irq"}, "--errno is required"),
    ({"site": "request-irq", "errno": "EFOO"}, "unknown errno 'EFOO'"),
    ({"site": "misc", "vector": 1}, "--vector does not apply"),
    ({"site": "rmap", "vector": -1}, "vector must be >= 0"),
    ({"site": "misc", "times": 0}, "times must be at least 1"),
    ({"site": "misc", "guest": "fuller", "cpus": 2}, "unknown guest 'fuller'"),
    ({"site": "misc", "guest": "safe", "cpus": 0}, "--cpus must be at least 1"),
])
def test_bad_specs_are_one_line_usage_errors(kwargs: dict[str, object], message: str) -> None:
    site = str(kwargs.pop("site"))
    with pytest.raises(UsageError, match=message) as ei:
        make_spec(site, **kwargs)  # type: ignore[arg-type]
    assert ei.value.exit_code == 2 and "\n" not in str(ei.value)


def test_a_vector_exists_when_the_driver_has_it() -> None:
    """The CPU count says nothing before boot (7.3 sets up 2 queue vectors with 4 CPUs): a
    vector far beyond any CPU count is a valid spec until the running driver says otherwise."""
    spec = make_spec("request-irq", errno="EBUSY", vector=9, guest="full", cpus=4)
    check_vector(FaultSpec("request-irq", 16, 5), 6)
    check_vector(FaultSpec("misc", 16), 0)  # not vectored: always fine
    with pytest.raises(UsageError, match=r"vector 9 does not exist: ice on eth0 has 2 queue "
                                         r"vectors \(0\.\.1\)$") as ei:
        check_vector(spec, 2, "ice on eth0")
    assert ei.value.exit_code == 2
    with pytest.raises(UsageError, match=r"rmap: vector 1 does not exist: the driver has 1 "
                                         r"queue vector \(0\)$"):
        check_vector(FaultSpec("rmap", 12, 1), 1)


@pytest.mark.parametrize("spec", [
    FaultSpec("request-irq", errno.EBUSY, 0), FaultSpec("request-irq", errno.EINVAL, 3, 2),
    FaultSpec("rmap", errno.ENOMEM), FaultSpec("rmap", errno.EINVAL, 1),
    FaultSpec("misc", errno.EBUSY), FaultSpec("misc", errno.ENOMEM, 0, 4),
])
def test_compact_form_round_trips(spec: FaultSpec) -> None:
    assert parse_spec(str(spec)) == spec
    assert json.loads(json.dumps(spec.to_json()))["spec"] == str(spec)


def test_parse_spec() -> None:
    assert parse_spec("request-irq:vector=1,errno=ebusy,times=2") == \
        FaultSpec("request-irq", errno.EBUSY, 1, 2)
    assert parse_spec(" rmap ") == FaultSpec("rmap", errno.ENOMEM)
    assert parse_spec("misc:errno=16") == FaultSpec("misc", errno.EBUSY)
    assert str(FaultSpec("request-irq", errno.EBUSY, 1, 2)) == \
        "request-irq:vector=1,errno=EBUSY,times=2"
    for bad, msg in (("request-irq:vector=x,errno=EBUSY", "vector must be a number"),
                     ("request-irq:vector=0,vector=1,errno=EBUSY", "vector given twice"),
                     ("request-irq:colour=red", "expected site"),
                     ("request-irq:vector", "expected site"),
                     ("nope:errno=EBUSY", "unknown fault site")):
        with pytest.raises(UsageError, match=msg):
            parse_spec(bad)
    # the vector is checked against the running driver, not here
    assert parse_spec("request-irq:vector=1,errno=EBUSY", guest="safe", cpus=2).vector == 1


def test_labels_and_descriptions() -> None:
    s = FaultSpec("request-irq", errno.EBUSY, 2, 3)
    assert s.label == "request-irq v2 EBUSY x3"
    assert s.describe() == ("devm_request_irq() of queue vector 2 returns -EBUSY at ip link "
                            "set up, 3 attempts in a row")
    assert FaultSpec("misc", errno.ENOMEM).label == "misc ENOMEM"
    assert "at probe" in FaultSpec("misc", errno.ENOMEM).describe()


def test_matrix_specs() -> None:
    safe = matrix_specs(1)
    assert [str(s) for s in safe] == [
        "request-irq:vector=0,errno=EBUSY", "request-irq:vector=0,errno=ENOMEM",
        "request-irq:vector=0,errno=EINVAL", "rmap:vector=0,errno=ENOMEM",
        "misc:errno=EBUSY", "misc:errno=ENOMEM", "misc:errno=EINVAL"]
    full = matrix_specs(4)
    assert len(full) == 4 * len(MATRIX_ERRNOS) + 1 + len(MATRIX_ERRNOS)
    assert {s.vector for s in full if s.site == "request-irq"} == {0, 1, 2, 3}


# ------------------------------------------------------------------------------ call sites

KO_IN_DEB = f"usr/lib/modules/{RELEASE}/kernel/drivers/net/ethernet/intel/ice/ice.ko.xz"


@pytest.fixture(scope="module")
def elf(tmp_path_factory: pytest.TempPathFactory) -> ModuleElf:
    """The stock ice.ko: the guest image's, else out of the cached linux-image .deb."""
    ko = paths.guest_dir("safe") / "ice.ko"
    if ko.is_file():
        return ModuleElf(ko)
    if shutil.which("dpkg-deb") is not None:
        for deb in sorted(paths.debs_dir().glob(f"linux-image-{RELEASE}*_amd64.deb")):
            with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)],
                                  stdout=subprocess.PIPE) as p, \
                    tarfile.open(fileobj=p.stdout, mode="r|") as tar:
                for m in tar:
                    f = tar.extractfile(m) if m.name.lstrip("./") == KO_IN_DEB else None
                    if f is not None:
                        out = tmp_path_factory.mktemp("ice") / "ice.ko"
                        out.write_bytes(lzma.decompress(f.read()))
                        p.kill()
                        return ModuleElf(out)
    pytest.skip(f"no {ko} and no cached linux-image .deb: run `make guest`")


def real_run(name: str) -> dict[str, object]:
    doc: dict[str, object] = json.loads((DATA / name / "observation.json").read_text())
    return doc


def loaded(elf: ModuleElf, text_base: int, unlikely_base: int) -> Kallsyms:
    """kallsyms as the guest lists ice with ``.text``/``.text.unlikely`` at these bases, plus
    ``devm_request_threaded_irq`` (its address in the real runs)."""
    lines = ["ffffffff81166780 T devm_request_threaded_irq"]
    bases = {".text": text_base, ".text.unlikely": unlikely_base}
    for name, places in elf.symbols.items():
        for shndx, value in places:
            base = bases.get(elf.section_names[shndx])
            if base is not None:
                lines.append(f"{base + value:016x} t {name}\t[ice]")
    return Kallsyms.parse("\n".join(lines) + "\n")


@pytest.mark.parametrize(("run", "site"), [
    ("request-irq-v0-ebusy-stock-safe", "request-irq"),
    ("rmap-enomem-stock-safe", "rmap"),
    ("misc-ebusy-stock-safe", "misc"),
])
def test_find_target_matches_the_real_runs(elf: ModuleElf, run: str, site: str) -> None:
    target_doc = real_run(run)["target"]
    assert isinstance(target_doc, dict)
    real = target_doc["call_sites"]
    # The .text base of those boots, from the first real call site.
    fn = real[0]["function"]
    text_base = int(real[0]["address"], 16) - real[0]["offset"] - elf.function(fn).offset
    ks = loaded(elf, text_base, text_base + 0x100000)
    t = find_target(elf, ks, make_spec(site, errno="EBUSY"))
    got = [{"function": s.site.function, "offset": s.site.function_offset,
            "address": f"{s.address:#x}", "length": s.site.length, "callee": s.site.callee}
           for s in t.sites]
    assert got == real
    assert t.to_json()["callee_address"] == target_doc["callee_address"]


def test_the_sites_in_the_stock_binary(elf: ModuleElf) -> None:
    ks = loaded(elf, 0xFFFFFFFFC020C000, 0xFFFFFFFFC0300000)
    req = find_target(elf, ks, make_spec("request-irq", errno="EBUSY"))
    # Both source calls of devm_request_irq are one call site: trapped there, no callee entry.
    assert [str(s.site) for s in req.sites] == [
        "ice_vsi_req_irq_msix+0x6d (.text+0x321d): call devm_request_threaded_irq"]
    assert req.callee_address is None
    rmap = find_target(elf, ks, make_spec("rmap"))
    assert [s.site.function for s in rmap.sites] == ["ice_set_cpu_rx_rmap"]
    # ice_set_cpu_rx_rmap is a real call, out of line, from ice_vsi_req_irq_msix.
    assert [s.callee for s in elf.call_sites("ice_vsi_req_irq_msix")].count(
        "ice_set_cpu_rx_rmap") == 1
    misc = find_target(elf, ks, make_spec("misc"))
    # misc and ll_ts: two calls; the callee's entry is trapped, filtered by the caller.
    assert [s.site.function_offset for s in misc.sites] == [0x297, 0x2F5]
    assert misc.callee_address == 0xFFFFFFFF81166780
    assert SITES["misc"].function == "ice_req_irq_msix_misc"


# ------------------------------------------------------------------------------ matching

class FakeStub:
    """Only what ArmedFault's matcher reads: memory (the request's name)."""

    def __init__(self, names: dict[int, bytes]) -> None:
        self.names = names

    async def read_memory(self, addr: int, length: int, thread: int | None = None) -> bytes:
        return self.names[addr][:length]


def hits(stub: FakeStub, calls: list[tuple[int, int]]) -> list[Hit]:
    """Hits of devm_request_threaded_irq(dev, irq, …, devname=r9)."""
    return [Hit(stub, 1, i, {"rdi": 0, "rsi": irq, "rdx": 0, "rcx": 0, "r8": 0, "r9": name},
                0) for i, (irq, name) in enumerate(calls, 1)]  # type: ignore[arg-type]


def armed(spec: FaultSpec, stub: FakeStub) -> ArmedFault:
    # Trapped at devm_request_threaded_irq's entry (its address in the real runs).
    target = Target(SITES[spec.site], (), 0xFFFFFFFF81166780)
    return ArmedFault(spec, target, stub, ifname="eth0", bdf="0000:01:00.0")  # type: ignore[arg-type]


def test_vector_k_is_the_k_plus_1th_request_of_the_netdev_in_each_attempt() -> None:
    names = {0x100: b"ice-eth0-TxRx-0\0junk", 0x200: b"ice-eth0-TxRx-1\0",
             0x300: b"ice-0000:01:00.0:ctrl-TxRx-0\0", 0x400: b"ice-eth0-TxRx-2\0"}
    stub = FakeStub(names)
    a = armed(FaultSpec("request-irq", errno.EBUSY, 1, 2), stub)

    async def go() -> list[bool]:
        out = []
        a.next_attempt()
        for h in hits(stub, [(30, 0x300), (28, 0x100), (29, 0x200), (31, 0x400)]):
            out.append(await a._match(h))
        a.next_attempt()  # a new open counts from vector 0 again
        for h in hits(stub, [(28, 0x100), (29, 0x200)]):
            out.append(await a._match(h))
        return out

    assert asyncio.run(go()) == [False, False, True, False, False, True]
    # The ctrl VSI's request is not counted nor recorded; each counted call is.
    assert [(c.attempt, c.hit, c.devname, c.irq, c.failed) for c in a.calls] == [
        (1, 1, "ice-eth0-TxRx-0", 28, False), (1, 2, "ice-eth0-TxRx-1", 29, True),
        (1, 3, "ice-eth0-TxRx-2", 31, False),
        (2, 1, "ice-eth0-TxRx-0", 28, False), (2, 2, "ice-eth0-TxRx-1", 29, True)]
    assert str(a.calls[1]) == "attempt 1 call 2: ice-eth0-TxRx-1 irq 29 FAILED"


def test_a_call_trapped_twice_is_counted_once() -> None:
    """A passed call that traps again at once with the same vCPU, stack, irq and name is the
    same call (its step-over did not get past it), not the next vector: vector 1 must fail
    TxRx-1, not TxRx-0's second trap."""
    stub = FakeStub({0x100: b"ice-eth0-TxRx-0\0", 0x200: b"ice-eth0-TxRx-1\0"})
    a = armed(FaultSpec("request-irq", errno.EBUSY, 1), stub)
    calls = hits(stub, [(28, 0x100), (28, 0x100), (29, 0x200)])
    for h in calls:
        h.registers["rsp"] = 0xFFFFC90000123E00  # one frame: the loop in the same function

    async def go() -> list[bool]:
        a.next_attempt()
        return [await a._match(h) for h in calls]

    assert asyncio.run(go()) == [False, False, True]
    assert [(c.devname, c.failed) for c in a.calls] == [("ice-eth0-TxRx-0", False),
                                                         ("ice-eth0-TxRx-1", True)]
    assert a.retraps == 1


def test_misc_matches_only_the_misc_request() -> None:
    stub = FakeStub({0x10: b"ice-0000:01:00.0:ll_ts\0", 0x20: b"ice-0000:01:00.0:misc\0"})
    a = armed(FaultSpec("misc", errno.EBUSY), stub)

    async def go() -> list[bool]:
        a.next_attempt()
        return [await a._match(h) for h in hits(stub, [(40, 0x10), (27, 0x20)])]

    assert asyncio.run(go()) == [False, True]
    assert [c.devname for c in a.calls] == ["ice-0000:01:00.0:misc"]


def test_rmap_counts_every_call_by_irq() -> None:
    a = armed(FaultSpec("rmap", errno.ENOMEM, 1), FakeStub({}))

    async def go() -> list[bool]:
        a.next_attempt()
        return [await a._match(h) for h in hits(FakeStub({}), [(28, 0), (29, 0), (30, 0)])]

    assert asyncio.run(go()) == [False, True, False]
    assert [(c.irq, c.devname, c.failed) for c in a.calls] == [
        (28, None, False), (29, None, True), (30, None, False)]


# ------------------------------------------------------------------------------ scenario helpers
# identify-*.txt: probe.IDENTIFY's output in real guests (safe with 2 CPUs, booted normally
# and with icevm.load=0; full with 4 CPUs: 6.12 without ethtool's channels, 6.1 and 7.3 with).

def test_identify_output() -> None:
    from icevm.guest.probe import parse_identify

    data = Path(__file__).parent / "data"
    safe = parse_identify((data / "identify-safe-bound.txt").read_text())
    assert (safe.bdf, safe.bound, safe.ifname, safe.queue_vectors) == \
        ("0000:01:00.0", True, "eth0", 1)
    full = parse_identify((data / "identify-full-cpus4.txt").read_text())
    assert (full.rx_queues, full.tx_queues, full.queue_vectors) == (4, 4, 4)
    # 7.3 spreads 4 queue pairs over 2 vectors: ethtool -l says so, sysfs does not
    new = parse_identify((data / "identify-full-cpus4-7.3.txt").read_text())
    assert (new.rx_queues, new.tx_queues, new.channels, new.queue_vectors) == \
        (4, 4, (2, 0, 0), 2)
    old = parse_identify((data / "identify-full-cpus4-6.1.txt").read_text())
    assert (old.channels, old.queue_vectors) == ((4, 0, 0), 4)
    noload = parse_identify((data / "identify-safe-noload.txt").read_text())
    assert (noload.bdf, noload.bound, noload.ifname, noload.queue_vectors) == \
        ("0000:01:00.0", False, None, 0)
    assert parse_identify("").bdf is None


def test_driver_mode_from_the_probe_log() -> None:
    from icevm.guest.probe import driver_mode

    def log(run: str) -> list[str]:
        return (DATA / run / "kernel.log").read_text().splitlines()

    # misc runs load ice after arming: their kernel.log holds the probe.
    assert driver_mode(log("misc-ebusy-stock-safe")) == "safe"
    assert driver_mode(log("misc-ebusy-stock-full4")) == "full"
    # From arming on, an open's log has only netdev lines (ice 0000:01:00.0 eth0: …): no probe.
    assert driver_mode(log("request-irq-v0-ebusy-stock-safe")) is None


def test_matrix_scenarios() -> None:
    from icevm.judge.scenarios import Scenario, matrix

    t = Scenario(FaultSpec("misc", errno.EBUSY), guest="full", cpus=3, module="patched",
                 accel="tcg")
    m = matrix(t, 2)  # the driver's 2 queue vectors, whatever the CPUs
    assert len(m) == 2 * 3 + 1 + 3
    assert {(s.guest, s.cpus, s.module, s.accel) for s in m} == {("full", 3, "patched", "tcg")}
    assert {s.fault.vector for s in m if s.fault.site == "request-irq"} == {0, 1}
    assert m[-1].fault == FaultSpec("misc", errno.EINVAL)
    with pytest.raises(UsageError, match="unknown module"):
        Scenario(FaultSpec("misc", 16), module="mine").validate()
    # the vector is the running driver's to judge (scenarios.run, once the guest is up)
    Scenario(FaultSpec("request-irq", 16, 1), guest="safe").validate()
    with pytest.raises(UsageError, match="unknown kernel 'jessie'"):
        Scenario(FaultSpec("misc", 16), kernel="jessie").validate()
    Scenario(FaultSpec("misc", 16), module="patched", kernel="bookworm").validate()
    with pytest.raises(UsageError, match=r"--ice-ko replaces the stock ice\.ko"):
        Scenario(FaultSpec("misc", 16), module="patched", ice_ko="/x/ice.ko").validate()


def test_a_site_the_driver_lacks_is_a_usage_error(elf: ModuleElf) -> None:
    """7.3's ice_set_cpu_rx_rmap calls no irq_cpu_rmap_add (the core manages the aRFS rmap):
    `fault rmap` there is exit 2, and matrix leaves the site out."""
    from icevm.inject.host import check_site, site_exists

    assert all(site_exists(elf, s) for s in SITES.values())
    gone = dataclasses.replace(SITES["rmap"], function="ice_no_such_function")
    assert not site_exists(elf, gone)
    with pytest.raises(UsageError, match=r"^rmap: the ice\.ko of 7\.3\.4\+deb13-amd64 has no "
                                         r"call to irq_cpu_rmap_add in ice_no_such_function"):
        check_site(elf, gone, "7.3.4+deb13-amd64")
    from icevm.judge.scenarios import Scenario, matrix

    m = matrix(Scenario(FaultSpec("misc", errno.EBUSY), guest="full"), 2,
               sites=["request-irq", "misc"])
    assert {s.fault.site for s in m} == {"request-irq", "misc"} and len(m) == 2 * 3 + 3

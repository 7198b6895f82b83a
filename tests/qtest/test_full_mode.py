"""Full mode, device alone: the DDP package download (0x0C40) and info (0x0C43) round trip, the
global-config lock around it, Update Package (0x0C42) under the change lock, the RSS key/LUT
commands (0x0B02..0x0B05) and their read-back over QMP ``e810-query-rss``.

The buffers are built the way ``ice_ddp.c`` lays them out (``struct ice_buf_hdr`` with
section tables); one test downloads the real ``ice-1.3.41.0.pkg`` (from the cached
firmware-intel-misc .deb the full guest image is built from) in the order the driver sends it.
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio

from icevm.devtest.qtest import DmaArena, PciDevice, QTest

from .e810_qtest import (
    E810_DEVICE,
    E810_VENDOR,
    GLBL_DONE,
    GLBL_SUCCESS,
    ICE_AQ_FLAG_RD,
    ICE_AQ_FLAG_SI,
    ICE_AQ_RC_EBADBUF,
    ICE_AQ_RC_EINVAL,
    ICE_AQ_RC_EPERM,
    LUT_PF_2K_FLAGS,
    OPC_ADD_VSI,
    OPC_GET_RSS_KEY,
    OPC_GET_RSS_LUT,
    OPC_SET_RSS_KEY,
    OPC_SET_RSS_LUT,
    OPC_UPLOAD_SECTION,
    PF_FW_ATQLEN,
    PFGEN_CTRL,
    PFGEN_CTRL_PFSWR_M,
    RES_CHANGE_LOCK,
    RES_GLOBAL_LOCK,
    RSS_VSI_VALID,
    SID_FLD_VEC_RSS,
    SID_METADATA,
    SID_PROFID_TCAM_RSS,
    SID_RXPARSER_METADATA_INIT,
    SID_XLT1_RSS,
    SID_XLT2_RSS,
    AdminQ,
    AqDesc,
    Qmp,
    ddp_download_order,
    download_buf,
    meta_section,
    pkg_buf,
    pkg_info_list,
    qemu_or_skip,
    qtest_args,
    real_ddp_package,
    release_res,
    request_res,
    update_pkg,
)

pytestmark = [pytest.mark.qtest, pytest.mark.full_mode, pytest.mark.asyncio]

TEST_VER = (1, 3, 99, 7)
TEST_NAME = "icevm Test Package"
TEST_TRACK = 0xC0DE0001
ICE_AQ_RC_ENOENT = 2
ICE_AQ_RC_EBADMAN = 27


@dataclass
class Rig:
    qt: QTest
    dev: PciDevice
    qmp: Qmp
    aq: AdminQ


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    q = qemu_or_skip()
    with tempfile.TemporaryDirectory(prefix="e810fm-") as tmp:
        sock = f"{tmp}/qmp.sock"
        q.args = [*qtest_args("id=nic0"), "-qmp", f"unix:{sock},server=on,wait=off"]
        async with q:
            dev = await PciDevice.setup(q, E810_VENDOR, E810_DEVICE)
            qmp = await Qmp.connect(sock)
            aq = AdminQ(q, dev, DmaArena(), entries=64)
            await aq.setup()
            try:
                yield Rig(q, dev, qmp, aq)
            finally:
                await qmp.close()


def small_package() -> list[tuple[bytes, bool]]:
    """A small package: a 'signature' buffer, a configuration buffer with the metadata section
    and RSS defaults, and a last buffer."""
    xlt1 = struct.pack("<HH", 32, 0) + bytes([0] * 26 + [1] + [0] * 5)  # ptype 26 -> PTG 1
    never = bytes(10)  # key = invert = 0: never match
    tcam = struct.pack("<H", 4) + b"".join(struct.pack("<H", a) + never + b"\0" for a in range(4))
    return [
        (pkg_buf((2, b"\x01" * 64)), False),
        (pkg_buf((SID_METADATA, meta_section(TEST_VER, TEST_NAME, TEST_TRACK)),
                 (SID_XLT1_RSS, xlt1), (SID_PROFID_TCAM_RSS, tcam)), False),
        (pkg_buf((SID_XLT2_RSS, struct.pack("<HH", 4, 0) + bytes(8))), True),
    ]


async def download(aq: AdminQ, bufs: list[tuple[bytes, bool]]) -> list[int]:
    """The driver's sequence: global lock, every buffer, release; the 0x0C40 retvals."""
    rv, status = await request_res(aq, RES_GLOBAL_LOCK)
    assert (rv, status) == (0, GLBL_SUCCESS)
    rets = [(await download_buf(aq, b, last=last))[0].retval for b, last in bufs]
    assert await release_res(aq, RES_GLOBAL_LOCK) == 0
    return rets


def vsi_props(q_base: int = 0, q_count: int = 4) -> bytes:
    """``struct ice_aqc_vsi_props`` of a PF VSI: contiguous queues, the PF's 2K LUT."""
    p = bytearray(128)
    struct.pack_into("<H", p, 0, (1 << 6) | (1 << 7))  # RXQ_MAP_VALID | Q_OPT_VALID
    struct.pack_into("<HHH", p, 28, 0, q_base, q_count)  # mapping_flags CONTIG, q_mapping[0..1]
    p[78] = 0x2  # q_opt_rss: ICE_AQ_VSI_Q_OPT_RSS_LUT_PF, Toeplitz
    return bytes(p)


async def add_vsi(aq: AdminQ) -> int:
    params = struct.pack("<HHH", 0, 0, 2).ljust(16, b"\0")  # vsi_flags @6: PF
    d = AqDesc(OPC_ADD_VSI, flags=ICE_AQ_FLAG_SI | ICE_AQ_FLAG_RD, datalen=128, params=params)
    out, _ = await aq.send(d, vsi_props())
    assert out.retval == 0
    return int(struct.unpack_from("<H", out.params, 0)[0] & 0x3FF)


# --------------------------------------------------------------------------- package

async def test_info_before_download_lists_only_the_nvm_package(rig: Rig) -> None:
    rv, infos = await pkg_info_list(rig.aq)
    assert rv == 0
    assert len(infos) == 1 and infos[0].in_nvm and infos[0].active_at_boot
    # ice_chk_pkg_compat: the NVM package's major must equal the ice segment format major (1)
    assert infos[0].ver[0] == 1


async def test_download_then_info_reports_the_downloaded_package_active(rig: Rig) -> None:
    assert await download(rig.aq, small_package()) == [0, 0, 0]
    rv, infos = await pkg_info_list(rig.aq)
    assert rv == 0
    active = [i for i in infos if i.active]
    assert len(active) == 1, infos
    a = active[0]
    assert (a.ver, a.name, a.track_id) == (TEST_VER, TEST_NAME, TEST_TRACK)
    assert not a.in_nvm
    # once loaded, the global lock answers DONE: "no work to do" (ice_aq_req_res)
    rv, status = await request_res(rig.aq, RES_GLOBAL_LOCK)
    assert (rv, status) == (0, GLBL_DONE)


async def test_download_without_the_global_lock_is_refused(rig: Rig) -> None:
    (buf, _), *_ = small_package()
    out, _ = await download_buf(rig.aq, buf, last=True)
    assert out.retval == ICE_AQ_RC_EPERM
    _, infos = await pkg_info_list(rig.aq)
    assert not any(i.active and not i.in_nvm for i in infos)


async def test_malformed_buffer_answers_ebadbuf_with_the_error_offset(rig: Rig) -> None:
    assert (await request_res(rig.aq, RES_GLOBAL_LOCK))[0] == 0
    bad = struct.pack("<HH", 0, 12).ljust(4096, b"\0")  # section_count 0
    out, back = await download_buf(rig.aq, bad, last=False)
    assert out.retval == ICE_AQ_RC_EBADBUF
    err_off, err_info = struct.unpack_from("<II", back)
    assert err_off == 0 and err_info == 0
    # a section that runs past data_end
    worse = bytearray(pkg_buf((SID_METADATA, meta_section(TEST_VER, TEST_NAME, 1))))
    struct.pack_into("<H", worse, 10, 0xFFF)  # section 0 size
    out, _ = await download_buf(rig.aq, bytes(worse), last=True)
    assert out.retval == ICE_AQ_RC_EBADBUF
    assert rig.qt.alive
    assert await release_res(rig.aq, RES_GLOBAL_LOCK) == 0
    _, infos = await pkg_info_list(rig.aq)
    assert not any(i.active and not i.in_nvm for i in infos)


async def test_package_without_metadata_is_not_activated(rig: Rig) -> None:
    rets = await download(rig.aq, [(pkg_buf((2, b"\0" * 8)), False),
                                   (pkg_buf((SID_XLT2_RSS, struct.pack("<HH", 0, 0))), True)])
    assert rets == [0, ICE_AQ_RC_EBADMAN]
    _, infos = await pkg_info_list(rig.aq)
    assert [i.in_nvm for i in infos] == [True]


async def test_pf_reset_keeps_the_package_a_device_reset_drops_it(rig: Rig) -> None:
    await download(rig.aq, small_package())
    await rig.qt.writel(rig.aq.reg(PFGEN_CTRL), PFGEN_CTRL_PFSWR_M)
    assert await rig.qt.readl(rig.aq.reg(PF_FW_ATQLEN)) == 0, "PF reset disables the AQ"
    await rig.aq.setup()
    _, infos = await pkg_info_list(rig.aq)
    assert any(i.active and i.name == TEST_NAME for i in infos)
    await rig.qmp.cmd("system_reset")
    rig.aq.dev = rig.dev = await PciDevice.setup(rig.qt, E810_VENDOR, E810_DEVICE)
    await rig.aq.setup()
    _, infos = await pkg_info_list(rig.aq)
    assert [i.in_nvm for i in infos] == [True], "a device reset loses the package"


async def test_real_package_downloads_in_driver_order(rig: Rig) -> None:
    pkg = real_ddp_package()
    if pkg is None:
        pytest.skip("no firmware-intel-misc .deb in the cache: run `make guest`")
    order = ddp_download_order(pkg)
    assert len(order) == 128, "3 signature buffers + 125 signed configuration buffers"
    assert [last for _, last in order].count(True) == 1 and order[-1][1]
    rets = await download(rig.aq, order)
    assert set(rets) == {0}
    _, infos = await pkg_info_list(rig.aq)
    (a,) = [i for i in infos if i.active]
    assert (a.name, a.ver) == ("ICE OS Default Package", (1, 3, 41, 0))
    # 0x0C41 of the RX parser metadata-init entry 0: the package's VLAN-mode flag (bit 183)
    sect = struct.pack("<HH", 1, 0) + bytes(24)
    buf = pkg_buf((SID_RXPARSER_METADATA_INIT, sect))
    d = AqDesc(OPC_UPLOAD_SECTION, flags=ICE_AQ_FLAG_SI | ICE_AQ_FLAG_RD | (1 << 9),
               datalen=4096)
    out, data = await rig.aq.send(d, buf)
    assert out.retval == 0
    entry = int.from_bytes(data[4 + 8 + 4: 4 + 8 + 4 + 24], "little")
    assert entry >> 183 & 1, "ice 1.3.41.0 supports double VLAN mode"


# --------------------------------------------------------------------------- update package

async def test_update_package_builds_an_rss_profile(rig: Rig) -> None:
    """ES, TCAM, XLT2 sections as ice_upd_prof_hw() sends them make an IPv4/TCP profile the
    VSI uses; QMP reads it back with the words in hash-input order."""
    await download(rig.aq, small_package())
    vsi = await add_vsi(rig.aq)
    prof, tcam_addr, vsig = 5, 100, 1
    # field vector, reversed (the RSS block's blk_sizes[].reverse): IPv4 SA, DA, TCP ports
    words = [(32, 12), (32, 14), (32, 16), (32, 18), (49, 0), (49, 2)]
    fv = [(0xFF, 0x1FF)] * 24
    for i, w in enumerate(words):
        fv[23 - i] = w
    es = struct.pack("<HH", 1, prof) + b"".join(struct.pack("<BHB", p, o, 0) for p, o in fv)
    # TCAM key {flags (don't care), PTG 1, VSIG 1}: bit pairs (key, invert) per ice_set_key
    val = bytes([0, 0, 1, vsig, 0])
    key = bytes([0xFF, 0xFF, *(~v & 0xFF for v in val[2:])])
    inv = bytes([0xFF, 0xFF, *val[2:]])
    tcam = struct.pack("<HH", 1, tcam_addr) + key + inv + bytes([prof])
    xlt2 = struct.pack("<HHH", 1, vsi, vsig)
    upd = pkg_buf((SID_FLD_VEC_RSS, es), (SID_PROFID_TCAM_RSS, tcam), (SID_XLT2_RSS, xlt2))
    assert await update_pkg(rig.aq, upd) == ICE_AQ_RC_EPERM, "needs the change lock"
    assert (await request_res(rig.aq, RES_CHANGE_LOCK))[0] == 0
    assert await update_pkg(rig.aq, upd) == 0
    assert await release_res(rig.aq, RES_CHANGE_LOCK) == 0
    info = await rig.qmp.cmd("e810-query-rss", id="nic0")
    (p,) = [p for p in info["profiles"] if p["profile"] == prof]
    assert p["ptypes"] == [26]
    assert [(w["protocol"], w["offset"]) for w in p["words"]] == words
    assert info["package"]["name"] == TEST_NAME and info["package"]["updates"] == 1


# --------------------------------------------------------------------------- RSS key / LUT

async def test_rss_key_and_lut_round_trip_and_qmp_read_back(rig: Rig) -> None:
    vsi = await add_vsi(rig.aq)
    key = bytes(range(0x40, 0x40 + 52))
    lut = bytes(i % 4 for i in range(2048))
    p = struct.pack("<H", vsi | RSS_VSI_VALID).ljust(16, b"\0")
    out, _ = await rig.aq.send(AqDesc(OPC_SET_RSS_KEY, flags=ICE_AQ_FLAG_SI | ICE_AQ_FLAG_RD,
                                      datalen=52, params=p), key)
    assert out.retval == 0
    lp = struct.pack("<HH", vsi | RSS_VSI_VALID, LUT_PF_2K_FLAGS).ljust(16, b"\0")
    rd_lb = ICE_AQ_FLAG_SI | ICE_AQ_FLAG_RD | (1 << 9)
    out, _ = await rig.aq.send(AqDesc(OPC_SET_RSS_LUT, flags=rd_lb, datalen=2048, params=lp),
                               lut)
    assert out.retval == 0
    out, got_key = await rig.aq.send(AqDesc(OPC_GET_RSS_KEY, datalen=52, params=p), bytes(52))
    assert (out.retval, got_key) == (0, key)
    out, got_lut = await rig.aq.send(AqDesc(OPC_GET_RSS_LUT, flags=ICE_AQ_FLAG_SI | (1 << 9),
                                            datalen=2048, params=lp), bytes(2048))
    assert (out.retval, got_lut) == (0, lut)
    info = await rig.qmp.cmd("e810-query-rss", id="nic0")
    assert info["vsi"] == vsi and info["lut-type"] == "pf"
    assert bytes.fromhex(info["key"]) == key and bytes(info["lut"]) == lut
    assert info["key-set"] and info["lut-set"]
    assert (info["queue-base"], info["queue-count"]) == (0, 4)
    assert info["hash-function"] == "toeplitz"


async def test_rss_lut_with_the_wrong_size_or_vsi_is_refused(rig: Rig) -> None:
    vsi = await add_vsi(rig.aq)
    lp = struct.pack("<HH", vsi | RSS_VSI_VALID, LUT_PF_2K_FLAGS).ljust(16, b"\0")
    out, _ = await rig.aq.send(AqDesc(OPC_SET_RSS_LUT, flags=ICE_AQ_FLAG_SI | ICE_AQ_FLAG_RD,
                                      datalen=512, params=lp), bytes(512))
    assert out.retval == ICE_AQ_RC_EINVAL, "a PF LUT is 2048 entries"
    bad = struct.pack("<HH", 700 | RSS_VSI_VALID, LUT_PF_2K_FLAGS).ljust(16, b"\0")
    out, _ = await rig.aq.send(AqDesc(OPC_SET_RSS_LUT, flags=ICE_AQ_FLAG_SI | ICE_AQ_FLAG_RD,
                                      datalen=2048, params=bad), bytes(2048))
    assert out.retval == ICE_AQ_RC_ENOENT
    ans = await rig.qmp.call("e810-query-rss", id="nic0", vsi=700)
    assert "error" in ans
    assert rig.qt.alive


async def test_a_pf_lut_get_without_a_size_flag_reads_the_table(rig: Rig) -> None:
    """6.1's __ice_aq_get_set_rss_lut() sends the size flag on sets only: a get of the PF
    table is type PF, size 0, a 2048-byte buffer. A set still needs the size, and a get
    with a buffer of another size is refused."""
    vsi = await add_vsi(rig.aq)
    lut = bytes((i * 7) % 4 for i in range(2048))
    lp = struct.pack("<HH", vsi | RSS_VSI_VALID, LUT_PF_2K_FLAGS).ljust(16, b"\0")
    rd_lb = ICE_AQ_FLAG_SI | ICE_AQ_FLAG_RD | (1 << 9)
    out, _ = await rig.aq.send(AqDesc(OPC_SET_RSS_LUT, flags=rd_lb, datalen=2048, params=lp),
                               lut)
    assert out.retval == 0
    bare = struct.pack("<HH", vsi | RSS_VSI_VALID, LUT_PF_2K_FLAGS & 0x3).ljust(16, b"\0")
    out, got = await rig.aq.send(AqDesc(OPC_GET_RSS_LUT, flags=ICE_AQ_FLAG_SI | (1 << 9),
                                        datalen=2048, params=bare), bytes(2048))
    assert (out.retval, got) == (0, lut)
    out, _ = await rig.aq.send(AqDesc(OPC_GET_RSS_LUT, datalen=512, params=bare), bytes(512))
    assert out.retval == ICE_AQ_RC_EINVAL
    out, _ = await rig.aq.send(AqDesc(OPC_SET_RSS_LUT, flags=rd_lb, datalen=2048, params=bare),
                               lut)
    assert out.retval == ICE_AQ_RC_EINVAL, "a set names its size"


async def test_hostile_package_buffers_leave_qemu_alive(rig: Rig) -> None:
    """Random section tables, sizes and counts into every new command: errors, never a
    crash (everything the guest writes is bounds-checked)."""
    import random

    rnd = random.Random(0xE810)
    await download(rig.aq, small_package())
    await add_vsi(rig.aq)
    assert (await request_res(rig.aq, RES_GLOBAL_LOCK))[1] == GLBL_DONE
    assert (await request_res(rig.aq, RES_CHANGE_LOCK))[0] == 0
    sids = [1, 2, 42, 43, 44, 46, 58, 34, 0x80000001, rnd.getrandbits(32)]
    for i in range(60):
        n = rnd.randint(1, 6)
        table = b"".join(struct.pack("<IHH", rnd.choice(sids), rnd.randint(0, 4200),
                                     rnd.randint(0, 4200)) for _ in range(n))
        raw = struct.pack("<HH", rnd.choice([n, 0, 600]), rnd.randint(0, 5000)) + table
        body = bytes(rnd.getrandbits(8) for _ in range(256))
        buf = (raw + body).ljust(4096, b"\xff")
        if i % 3 == 0:
            await update_pkg(rig.aq, buf)
        elif i % 3 == 1:
            d = AqDesc(OPC_UPLOAD_SECTION, flags=ICE_AQ_FLAG_SI | ICE_AQ_FLAG_RD | (1 << 9),
                       datalen=4096)
            await rig.aq.send(d, buf)
        else:
            flags = rnd.getrandbits(16)
            size = rnd.choice([64, 128, 512, 2048, 4096])
            lp = struct.pack("<HH", rnd.getrandbits(16), flags).ljust(16, b"\0")
            await rig.aq.send(AqDesc(rnd.choice([OPC_SET_RSS_LUT, OPC_GET_RSS_LUT]),
                                     flags=ICE_AQ_FLAG_SI | ICE_AQ_FLAG_RD | (1 << 9),
                                     datalen=size, params=lp), buf[:size])
        assert rig.qt.alive
    # a fresh download session with junk under the global lock after a device reset
    await rig.qmp.cmd("system_reset")
    rig.aq.dev = rig.dev = await PciDevice.setup(rig.qt, E810_VENDOR, E810_DEVICE)
    await rig.aq.setup()
    assert (await request_res(rig.aq, RES_GLOBAL_LOCK))[1] == GLBL_SUCCESS
    for _ in range(20):
        junk = bytes(rnd.getrandbits(8) for _ in range(4096))
        await download_buf(rig.aq, junk, last=rnd.random() < 0.3)
        assert rig.qt.alive
    info = await rig.qmp.call("e810-query-rss", id="nic0")
    assert "error" in info or "return" in info


async def test_update_vsi_applies_only_its_valid_sections(rig: Rig) -> None:
    """0x0211 with only Q_OPT_VALID (what ice_set_rss_hfunc() sends): the hash function
    changes, the queue map (not valid in that buffer, zero there) stays."""
    vsi = await add_vsi(rig.aq)
    upd = bytearray(128)
    struct.pack_into("<H", upd, 0, 1 << 7)  # ICE_AQ_VSI_PROP_Q_OPT_VALID
    upd[78] = 0x2 | (1 << 6)  # PF LUT, ICE_AQ_VSI_Q_OPT_RSS_HASH_SYM_TPLZ
    out, _ = await rig.aq.send(AqDesc(0x0211, flags=ICE_AQ_FLAG_SI | ICE_AQ_FLAG_RD, datalen=128,
                                      params=struct.pack("<H", vsi).ljust(16, b"\0")),
                               bytes(upd))
    assert out.retval == 0
    info = await rig.qmp.cmd("e810-query-rss", id="nic0")
    assert info["hash-function"] == "symmetric-toeplitz"
    assert (info["queue-base"], info["queue-count"]) == (0, 4)

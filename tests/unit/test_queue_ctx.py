"""The packed queue contexts the qtests and the fuzzer write
(icevm.devtest.qtest.rlan_ctx/tlan_ctx), pinned dword for dword: the qtests' (the driver's
bits: l2tsel, lrxqthresh, prefena, tso_ena, legacy_int set) and the fuzzer's (those clear,
dtype its own), so a change to the shared packer cannot shift what either writes into the
device."""

from __future__ import annotations

import pytest

from icevm.devtest import fuzz
from icevm.devtest.qtest import rlan_ctx, set_bits, tlan_ctx


@pytest.mark.parametrize(("args", "dwords"), [
    ((0x0010_2000, 8, 1536, 1536),  # tests/qtest/test_datapath.py setup_rxq
     [0x00000000, 0x00002040, 0x10000000, 0x00B00300,
      0x00000000, 0x01800000, 0x00000240, 0x00000000]),
    ((0x0010_4000, 8, 2048, 1536),  # tests/qtest/test_device_faults.py setup_rxq
     [0x00000000, 0x00002080, 0x10000000, 0x00B00400,
      0x00000000, 0x01800000, 0x00000240, 0x00000000]),
    ((0xFFFF_FFFF_FFFF_F000, 0, 0, 0),  # the unusable contexts of test_datapath
     [0x00000000, 0xFFFFFFE0, 0x01FFFFFF, 0x00B00000,
      0x00000000, 0x00000000, 0x00000240, 0x00000000]),
    ((0xFFFF_FFFF_FFFF_F000, 64, 2048, 2048),
     [0x00000000, 0xFFFFFFE0, 0x81FFFFFF, 0x00B00400,
      0x00000000, 0x02000000, 0x00000240, 0x00000000]),
])
def test_rlan_ctx_as_the_qtests_write_it(args: tuple[int, int, int, int],
                                         dwords: list[int]) -> None:
    assert rlan_ctx(*args) == dwords


def test_rlan_ctx_as_the_fuzzer_writes_it() -> None:
    # the scenario's context, and a wild one with every field of the fuzzer's at its widest
    assert fuzz.rlan_ctx(0x400000, 8, 128, 9728, dsize=1, crcstrip=1, head=0, dtype=0) == [
        0x00000000, 0x00008000, 0x10000000, 0x00300040,
        0x00000000, 0x09800000, 0x00000000, 0x00000000]
    assert fuzz.rlan_ctx(0x440000, 8191, 16256, 16383, dsize=0, crcstrip=0, head=8190,
                         dtype=3) == [
        0x00001FFE, 0x00008800, 0xFE000000, 0x000C1FFF,
        0x00000000, 0x0FFFC000, 0x00000000, 0x00000000]


def test_tlan_ctx_of_the_qtests_and_of_the_fuzzer() -> None:
    assert tlan_ctx(0x0010_8000, 64, 5).hex() == "002100000000000000800000000000000020000b1000"
    assert fuzz.tlan_ctx(0x800000, 512, 3).hex() == \
        "00000100000000000080000000000000000001060000"
    # a queue number beyond the 11-bit field is cut to it
    assert fuzz.tlan_ctx(0x840000, 8191, 0xFFFF).hex() == \
        "0008010000000000008000000000000080ff0ffe0f00"


def test_set_bits_clears_what_it_does_not_set() -> None:
    buf = bytearray(b"\xff\xff")
    set_bits(buf, 4, 8, 0x5A)
    assert buf == bytearray(b"\xaf\xf5")

"""Reading the kselftest runner's output and writing JUnit (no QEMU)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from icevm.build.selftests import (
    CaseResult,
    SelftestRun,
    check_tests,
    junit_xml,
    parse_tap,
    results_tap,
)
from icevm.errors import UsageError

PING = """TAP version 13
1..1
# timeout set to 45
# selftests: drivers/net: ping.py
# KTAP version 1
# 1..3
# ok 1 ping.test_v4
# # Check failed 1 != 0 ping
# not ok 2 ping.test_v6
# ok 3 ping.test_tcp # SKIP no socat on the remote
# # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0
not ok 1 selftests: drivers/net: ping.py # exit=1
"""


def test_cases_with_reasons() -> None:
    assert parse_tap("drivers/net/ping.py", PING) == [
        CaseResult("drivers/net/ping.py", "ping.test_v4", "ok"),
        CaseResult("drivers/net/ping.py", "ping.test_v6", "fail", "Check failed 1 != 0 ping"),
        CaseResult("drivers/net/ping.py", "ping.test_tcp", "skip", "no socat on the remote"),
    ]


@pytest.mark.parametrize(("outer", "want"), [
    ("ok 1 selftests: drivers/net: x.sh", "ok"),
    ("ok 1 selftests: drivers/net: x.sh # SKIP", "skip"),
    ("not ok 1 selftests: drivers/net: x.sh # exit=1", "fail"),
    ("not ok 1 selftests: drivers/net: x.sh # TIMEOUT 900 seconds", "fail"),
])
def test_a_test_without_cases_is_one_case(outer: str, want: str) -> None:
    got = parse_tap("drivers/net/x.sh", f"TAP version 13\n1..1\n# some output\n{outer}\n")
    assert [c.result for c in got] == [want]


def test_no_result_at_all_is_a_failure() -> None:
    assert parse_tap("t", "garbage\n")[0].result == "fail"


def test_junit_counts_and_messages(tmp_path: Path) -> None:
    cases = parse_tap("drivers/net/ping.py", PING)
    doc = ET.fromstring(junit_xml([SelftestRun("drivers/net/ping.py", cases, tmp_path, tmp_path)]))
    suite = doc.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    failure = doc.find(".//failure")
    assert failure is not None and failure.get("message") == "Check failed 1 != 0 ping"


def test_unknown_test_is_a_usage_error() -> None:
    assert check_tests([], ["a/b.py"]) == ["a/b.py"]
    with pytest.raises(UsageError, match=r"no selftest 'x\.py'"):
        check_tests(["x.py"], ["a/b.py"])


GRO = """# # Exception| net.lib.py.utils.CmdExitFailure: Command failed
# # Exception|   STDERR: Expected {101 }, Total 1 packets
# # Exception|           /opt/ksft/net/lib/gro: incorrect number of packets
# # Exception|
# not ok 4 gro.test.sw_ipv4_data_lrg_1byte
# ok 100 gro.test.hw_ipv4_data_same # XFAIL Device does not support rx-gro-hw
# # Defer Exception| NlError: Netlink error: hash field config is not symmetric
# # Defer Exception|
# not ok 101 rss_api.test_rxfh_nl_set_indir
"""


def test_an_expected_failure_is_neither_ok_nor_a_failure(tmp_path: Path) -> None:
    cases = parse_tap("drivers/net/gro.py", GRO)
    assert cases == [
        CaseResult("drivers/net/gro.py", "gro.test.sw_ipv4_data_lrg_1byte", "fail",
                   "/opt/ksft/net/lib/gro: incorrect number of packets"),
        CaseResult("drivers/net/gro.py", "gro.test.hw_ipv4_data_same", "xfail",
                   "Device does not support rx-gro-hw"),
        CaseResult("drivers/net/gro.py", "rss_api.test_rxfh_nl_set_indir", "fail",
                   "NlError: Netlink error: hash field config is not symmetric"),
    ]
    run = SelftestRun("drivers/net/gro.py", cases, tmp_path, tmp_path)
    suite = ET.fromstring(junit_xml([run])).find("testsuite")
    assert suite is not None
    assert (suite.get("failures"), suite.get("skipped")) == ("2", "1")
    assert results_tap([run]).splitlines()[2:4] == [
        "not ok 1 drivers/net/gro.py gro.test.sw_ipv4_data_lrg_1byte "
        "# /opt/ksft/net/lib/gro: incorrect number of packets",
        "not ok 2 drivers/net/gro.py gro.test.hw_ipv4_data_same "
        "# TODO Device does not support rx-gro-hw",
    ]


def test_a_skipped_shell_test_says_what_it_lacks() -> None:
    out = """# TEST: mausezahn not installed                                       [SKIP]
ok 1 selftests: drivers/net/hw: ethtool.sh # SKIP
# 1 skipped test(s) detected.  Consider enabling relevant config options to improve coverage.
"""
    assert parse_tap("drivers/net/hw/ethtool.sh", out) == [
        CaseResult("drivers/net/hw/ethtool.sh", "drivers/net/hw/ethtool.sh", "skip",
                   "mausezahn not installed")]

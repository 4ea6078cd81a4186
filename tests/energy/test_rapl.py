"""RAPL meter against temporary powercap trees (see fake_powercap.py)."""

from __future__ import annotations

import builtins
import os
import time

import pytest
from fake_powercap import FakePowercap, intel_two_sockets

from tuning_energy.energy.rapl import RaplMeter
from tuning_energy.errors import MeterUnavailable


def test_one_socket_package_only(tmp_path):
    pc = FakePowercap(tmp_path)
    pc.zone("intel-rapl:0", "package-0", 5_000_000)
    with RaplMeter(pc.root, background=False) as meter:
        w = meter.begin()
        pc.add("intel-rapl:0", 2_500_000)
        m = meter.end(w)
    assert m.method == "rapl"
    assert m.by_device_j == {"cpu0": pytest.approx(2.5)}
    assert m.energy_j == pytest.approx(2.5)


def test_two_sockets_dram_added_core_uncore_psys_not(tmp_path):
    pc = intel_two_sockets(tmp_path)
    with RaplMeter(pc.root, background=False) as meter:
        assert set(meter.describe()["not_added"]) == {
            "intel-rapl:0:0", "intel-rapl:0:1", "intel-rapl:1:0", "intel-rapl:1:1", "intel-rapl:2"}
        w = meter.begin()
        pc.add("intel-rapl:0", 10_000_000)
        pc.add("intel-rapl:0:0", 7_000_000)  # core: inside package-0's 10 J
        pc.add("intel-rapl:0:1", 1_000_000)  # uncore: likewise
        pc.add("intel-rapl:0:2", 3_000_000)
        pc.add("intel-rapl:1", 4_000_000)
        pc.add("intel-rapl:1:2", 1_000_000)
        pc.add("intel-rapl:2", 25_000_000)  # psys covers everything: never added
        m = meter.end(w)
    assert m.by_device_j == pytest.approx({"cpu0": 10.0, "dram0": 3.0, "cpu1": 4.0, "dram1": 1.0})
    assert m.energy_j == pytest.approx(18.0)


def test_amd_tree_has_no_dram(tmp_path):
    pc = FakePowercap(tmp_path)  # AMD Zen: same driver and names, package zones only
    pc.zone("intel-rapl:0", "package-0")
    pc.zone("intel-rapl:0:0", "core")
    with RaplMeter(pc.root, background=False) as meter:
        w = meter.begin()
        pc.add("intel-rapl:0", 1_000_000)
        pc.add("intel-rapl:0:0", 900_000)
        m = meter.end(w)
    assert m.by_device_j == pytest.approx({"cpu0": 1.0})


def test_wrap_is_corrected(tmp_path):
    pc = FakePowercap(tmp_path)
    rng = 10_000_000
    pc.zone("intel-rapl:0", "package-0", rng - 1_000_000, max_range_uj=rng)
    with RaplMeter(pc.root, background=False) as meter:
        w = meter.begin()
        pc.set("intel-rapl:0", 2_000_000)  # wrapped: 1 J to the top, then 2 J
        m = meter.end(w)
    assert m.energy_j == pytest.approx(3.0)
    assert meter.wraps == 1


def test_window_longer_than_several_wraps_with_background_polling(tmp_path):
    pc = FakePowercap(tmp_path)
    rng = 10_000_000  # 10 J range
    pc.zone("intel-rapl:0", "package-0", 0, max_range_uj=rng)
    with RaplMeter(pc.root, poll_s=0.01) as meter:
        w = meter.begin()
        for _ in range(5):  # 5 x 6 J = 30 J: three wraps within one window
            pc.add("intel-rapl:0", 6_000_000)
            # Wait until the background poller (not this thread) has read the counter, as it
            # would at 1/4 of the wrap period; a loaded machine may delay it.
            seen = meter.polls
            deadline = time.monotonic() + 10
            while meter.polls == seen and time.monotonic() < deadline:
                time.sleep(0.005)
            assert meter.polls > seen, "the background poller never ran"
        m = meter.end(w)
    assert m.energy_j == pytest.approx(30.0)
    assert meter.wraps == 2  # 0 -> 6 -> 2 -> 8 -> 4 -> 10 (no wrap at the top)


def test_without_polling_a_long_window_would_lose_wraps(tmp_path):
    # What the poller is for: two wraps between reads look like none.
    pc = FakePowercap(tmp_path)
    pc.zone("intel-rapl:0", "package-0", 0, max_range_uj=10_000_000)
    with RaplMeter(pc.root, background=False) as meter:
        w = meter.begin()
        for _ in range(5):
            pc.add("intel-rapl:0", 6_000_000)
        m = meter.end(w)
    assert m.energy_j != pytest.approx(30.0)


def test_default_poll_period_is_a_quarter_wrap_at_1kw(tmp_path):
    pc = FakePowercap(tmp_path)
    pc.zone("intel-rapl:0", "package-0", max_range_uj=40_000_000)  # 40 J: 40 ms at 1 kW
    with RaplMeter(pc.root) as meter:
        assert meter.poll_s == pytest.approx(0.01)
    pc2 = FakePowercap(tmp_path / "b")
    pc2.zone("intel-rapl:0", "package-0")  # 262 kJ: 65 s, capped at 60 s
    with RaplMeter(pc2.root) as meter:
        assert meter.poll_s == 60.0


def test_unreadable_counter_names_file_reason_and_fix(tmp_path, monkeypatch):
    pc = FakePowercap(tmp_path)
    pc.zone("intel-rapl:0", "package-0")
    target = pc.zones["intel-rapl:0"] / "energy_uj"
    target.chmod(0o000)  # what the kernel does since 5.10 (0400 root) ...
    # ... but the tests run as root, who reads mode-000 files anyway; so make open() fail
    # for that file exactly as the kernel makes it fail for a non-root user (EACCES).
    real_open = builtins.open

    def kernel_like_open(file, *args, **kwargs):
        if os.path.realpath(file) == str(target.resolve()):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", kernel_like_open)
    with pytest.raises(MeterUnavailable) as err:
        RaplMeter(pc.root, background=False)
    msg = str(err.value)
    assert "intel-rapl:0/energy_uj" in msg
    assert "CVE-2020-8694" in msg and "root" in msg
    assert "chmod" in msg and "meter.kind = 'estimate'" in msg


def test_missing_tree_and_tree_without_packages(tmp_path):
    with pytest.raises(MeterUnavailable, match="no powercap tree"):
        RaplMeter(tmp_path / "nope")
    pc = FakePowercap(tmp_path)
    pc.zone("intel-rapl:0", "psys")
    with pytest.raises(MeterUnavailable, match="no RAPL package zones"):
        RaplMeter(pc.root)


def test_counts_from_creation_and_windows_nest(tmp_path):
    pc = FakePowercap(tmp_path)
    pc.zone("intel-rapl:0", "package-0", 123_000_000)
    with RaplMeter(pc.root, background=False) as meter:
        assert meter.read_j() == {"cpu0": 0.0}
        outer = meter.begin()
        pc.add("intel-rapl:0", 1_000_000)
        inner = meter.begin()
        pc.add("intel-rapl:0", 2_000_000)
        assert meter.end(inner).energy_j == pytest.approx(2.0)
        assert meter.end(outer).energy_j == pytest.approx(3.0)

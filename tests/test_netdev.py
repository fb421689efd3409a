"""Network counters from /proc/net/dev and link state from sysfs: psutil's values exactly."""

from __future__ import annotations

import errno
import os

import psutil
import pytest

from agent import netdev, probes

NET_DEV = (
    "Inter-|   Receive                                                |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop "
    "fifo colls carrier compressed\n"
    "    lo:    3193      29    0    0    0     0          0         0     3193      29    0    0 "
    "   0     0       0          0\n"
    "  eth0: 55313910    1779    2    5    0     0          0         0   135867    1332    1    0 "
    "   0     0       0          0\n"
    "  eth1:      10       1    0    0    0     0          0         0       20       2    0    3 "
    "   0     0       0          0\n"
)
# The kernel's answer for a link it cannot tell the speed of from sysfs: lo has no link settings.
KERNEL_EINVAL = "/sys/class/net/lo/speed"


@pytest.fixture
def fake_proc(tmp_path, monkeypatch):
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "dev").write_text(NET_DEV)
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(proc))
    psutil.net_io_counters.cache_clear()  # psutil remembers counters to undo wraps
    yield proc
    psutil.net_io_counters.cache_clear()


def psutils_counters():
    return {
        name: netdev.NetIO(c.bytes_sent, c.bytes_recv, c.errin, c.errout, c.dropin, c.dropout)
        for name, c in psutil.net_io_counters(pernic=True).items()
    }


def link(sys_path, name, operstate, speed):
    """/sys/class/net/<name> with its operstate and speed (a str, or a path whose read fails)."""
    folder = sys_path / "class" / "net" / name
    folder.mkdir(parents=True)
    (folder / "operstate").write_text(f"{operstate}\n")
    if speed.startswith("/"):
        (folder / "speed").symlink_to(speed)
    else:
        (folder / "speed").write_text(f"{speed}\n")


def test_counters_are_psutils(fake_proc):
    found = netdev.NoWrap().run(netdev.counters((fake_proc / "net" / "dev").read_text()))
    assert found == psutils_counters()
    assert found["eth0"] == netdev.NetIO(
        bytes_sent=135867, bytes_recv=55313910, errin=2, errout=1, dropin=5, dropout=0
    )


def test_a_counter_that_went_down_keeps_growing_as_psutils_nowrap_makes_it(fake_proc):
    wraps = netdev.NoWrap()
    dev = fake_proc / "net" / "dev"
    readings = [NET_DEV, NET_DEV.replace("55313910", "100"), NET_DEV.replace("55313910", "200"), NET_DEV]
    for text in readings:
        dev.write_text(text)
        expected = psutils_counters()
        assert wraps.run(netdev.counters(text)) == expected
    assert expected["eth0"].bytes_recv == 55313910 + 55313910  # 55313910 added when it went to 100


def test_an_interface_gone_forgets_what_was_added_to_it():
    wraps = netdev.NoWrap()
    wraps.run({"eth0": (10, 10, 0, 0, 0, 0)})
    assert wraps.run({"eth0": (5, 10, 0, 0, 0, 0)})["eth0"].bytes_sent == 15
    wraps.run({})
    assert wraps.run({"eth0": (1, 1, 0, 0, 0, 0)})["eth0"].bytes_sent == 1


def test_link_state_and_speed_from_sysfs(tmp_path):
    link(tmp_path, "eth0", "up", "1000")
    link(tmp_path, "wlan0", "unknown", "-1")  # the driver does not know: psutil says 0
    link(tmp_path, "eth2", "dormant", "100")  # not IFF_RUNNING
    links = netdev.LinkFiles(str(tmp_path))
    assert links.stats(["eth0", "wlan0", "eth2"]) == {
        "eth0": netdev.IfStats(True, 1000),
        "wlan0": netdev.IfStats(True, 0),
        "eth2": netdev.IfStats(False, 100),
    }
    # Kept open and re-read: a link going down is seen at the next snapshot.
    (tmp_path / "class" / "net" / "eth0" / "operstate").write_text("down\n")
    assert links.stats(["eth0"]) == {"eth0": netdev.IfStats(False, 1000)}
    links.close()


def test_a_down_link_has_the_speed_the_ethtool_ioctl_gives(tmp_path):
    # sysfs refuses (EINVAL) the speed of a link not up; the ioctl gives the driver's figure or 0.
    link(tmp_path, "eth0", "down", KERNEL_EINVAL)
    asked = []
    links = netdev.LinkFiles(str(tmp_path), speed=lambda name: asked.append(name) or 100)
    assert links.stats(["eth0"]) == {"eth0": netdev.IfStats(False, 100)}
    assert asked == ["eth0"]
    links.close()


def test_an_interface_gone_is_left_out_as_psutil_leaves_it(tmp_path):
    link(tmp_path, "eth0", "up", "1000")
    link(tmp_path, "eth1", "down", KERNEL_EINVAL)

    def gone(name):
        raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))

    links = netdev.LinkFiles(str(tmp_path), speed=gone)
    assert links.stats(["eth0", "eth1", "usb0"]) == {"eth0": netdev.IfStats(True, 1000)}
    links.close()


def test_net_io_from_the_files_is_psutils(fake_proc, tmp_path):
    link(tmp_path, "eth0", "up", "1000")
    link(tmp_path, "eth1", "down", KERNEL_EINVAL)
    stats = {"eth0": netdev.IfStats(True, 1000), "eth1": netdev.IfStats(False, 0)}
    from_psutil = probes.net_io_of(psutil.net_io_counters(pernic=True), lambda _names: stats, str(tmp_path))
    links = netdev.LinkFiles(str(tmp_path), speed=lambda name: 0)
    counters = netdev.NoWrap().run(netdev.counters(NET_DEV))
    assert probes.net_io_of(counters, links.stats, str(tmp_path)) == from_psutil
    assert from_psutil["interfaces"]["eth1"] == {
        "rx_bytes": 10,
        "tx_bytes": 20,
        "errors": 0,
        "drops": 3,
        "up": False,
        "speed": None,
    }
    links.close()


def test_this_machines_links_are_psutils():
    expected = {name: netdev.IfStats(s.isup, s.speed) for name, s in psutil.net_if_stats().items()}
    names = [name for name in expected if name != "lo"]
    assert names, "no network interface on this machine"
    links = netdev.LinkFiles()
    assert links.stats(names) == {name: expected[name] for name in names}
    links.close()
    for name in expected:  # the ioctl itself, for up and down links alike
        assert netdev.ethtool_speed(name) == expected[name].speed


def test_this_machines_counters_are_psutils():
    with open("/proc/net/dev") as f:
        before = netdev.counters(f.read())
    counters = psutil.net_io_counters(pernic=True, nowrap=False)
    with open("/proc/net/dev") as f:
        after = netdev.counters(f.read())
    for name, c in counters.items():
        now = (c.bytes_sent, c.bytes_recv, c.errin, c.errout, c.dropin, c.dropout)
        assert all(b <= n <= a for b, n, a in zip(before[name], now, after[name], strict=True))

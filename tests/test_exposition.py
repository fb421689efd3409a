"""/metrics text of hosts (collector.web.exposition): numbers exact, line starts kept between scrapes right."""

from __future__ import annotations

import math

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.web import exposition, typed
from tests.test_web import received

T0 = 1_764_000_000.0


def samples(lines: list[str]) -> dict[str, float]:
    """{series (name and labels): value} of the sample lines (an item of `lines` may hold several)."""
    text = "\n".join(lines).splitlines()
    return {k: float(v) for k, _, v in (line.rpartition(" ") for line in text if not line.startswith("#"))}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=20))
def test_numbers_read_back_as_the_very_values_written(values: list[float]) -> None:
    texts = exposition.numbers(values)
    assert len(texts) == len(values)
    for text, value in zip(texts, values, strict=True):
        # What Prometheus reads: the same float64, in the format's float syntax.
        assert float(text) == value and math.copysign(1, float(text)) == math.copysign(1, value)
        assert text.replace("e", "").replace("-", "").replace("+", "").replace(".", "").isdigit(), text


def state(name: str, seq: int, **values: object) -> exposition.HostState:
    # The store keeps names the wire would refuse too (defence in depth): the snapshot is any valid one.
    return exposition.HostState(name, True, T0 + seq, received("web-00", seq, T0 + seq, **values).raw)


def test_a_scrape_with_kept_line_starts_says_what_a_fresh_one_says() -> None:
    starts = exposition.LineStarts()
    first = [state("web-01", 1, mounts={"/": 50.0, "/var": 70.0}), state("db-01", 1, cores=4)]
    assert exposition.hosts_text(first, starts) == exposition.hosts_text(first)
    # The next scrape: web-01 lost /var and gained /srv, db-01 left, a host named like a label came.
    second = [state("web-01", 2, mounts={"/": 51.0, "/srv": 10.0}), state('x",mount="/var', 1)]
    text = exposition.hosts_text(second, starts)
    assert text == exposition.hosts_text(second)
    found = samples(text)
    assert found['osmon_host_filesystem_used_ratio{host="web-01",mount="/srv"}'] == 0.1
    assert 'osmon_host_filesystem_used_ratio{host="web-01",mount="/var"}' not in found
    assert not [k for k in found if "db-01" in k]
    assert found['osmon_host_cpu_busy_ratio{host="x\\",mount=\\"/var"}'] == 0.1


def test_a_host_inventing_names_is_exported_whole_and_keeps_a_bounded_memory() -> None:
    starts = exposition.LineStarts()
    for seq in range(1, 4):  # new mount names at each snapshot: 1,200 in all
        mounts = {f"/m{seq}-{i}": 1.0 for i in range(400)}
        text = exposition.hosts_text([state("web-01", seq, mounts=mounts)], starts)
        assert {k for k in samples(text) if k.startswith("osmon_host_filesystem_used_ratio")} == {
            f'osmon_host_filesystem_used_ratio{{host="web-01",mount="{m}"}}' for m in mounts
        }
    assert max(len(k) for k in starts.of("web-01").entities) == exposition.MAX_KEPT


def test_a_snapshot_scraped_again_says_the_same_and_a_new_one_its_own_numbers() -> None:
    starts = exposition.LineStarts()
    first = [state("web-01", 1, mounts={"/": 50.0}), state("db-01", 1, mounts={"/": 20.0})]
    assert (
        exposition.hosts_text(first, starts)
        == exposition.hosts_text(first, starts)
        == exposition.hosts_text(first)
    )
    # web-01 sends a new snapshot; db-01's is the same one, stored anew (equal bytes, another object).
    second = [state("web-01", 2, mounts={"/": 60.0}), state("db-01", 1, mounts={"/": 20.0})]
    found = samples(exposition.hosts_text(second, starts))
    assert found['osmon_host_filesystem_used_ratio{host="web-01",mount="/"}'] == 0.6
    assert found['osmon_host_filesystem_used_ratio{host="db-01",mount="/"}'] == 0.2


# -- the typed path (collector.web.typed) says what the exact, value-by-value path says ---------------

# Numbers a host may send where /metrics reads one: plausible ones, and all a hostile or broken
# agent could store instead (out of range, NaN, infinities, bools, strings, nulls, integers
# just past a bound that a float comparison would let through).
PLAUSIBLE = st.floats(min_value=0, max_value=1) | st.integers(min_value=0, max_value=1)  # within every unit
EDGES = st.sampled_from([2**60, 2**60 + 1, 2**60 + 64, 2**64 - 1, 2.0**60, 2**53 + 1, -0.0, 100.0, 100.01])
ANYTHING = (
    PLAUSIBLE
    | EDGES
    | st.floats()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.booleans()
    | st.none()
    | st.text(max_size=3)
)
NAMES = st.sampled_from(["/", "/var", "vda", "eth0", 'a"b\\c', "0"])


def snapshot_bytes(number: st.SearchStrategy[object]) -> st.SearchStrategy[bytes]:
    """Stored snapshots whose exported numbers are drawn from `number` (keys and shapes as agents send)."""
    from collector.web import exports

    def entities(of: st.SearchStrategy[object]) -> st.SearchStrategy[dict[str, object]]:
        return st.dictionaries(NAMES, of, max_size=3)

    fields = st.fixed_dictionaries(
        {}, optional={"total": number, "available": number, "cached": number, "used": number}
    )
    probes = st.fixed_dictionaries(
        {},
        optional={
            "memory": fields,
            "swap": fields | st.none(),
            "filesystems": st.lists(
                st.fixed_dictionaries({"mount": NAMES}, optional={"total": number, "free": number}),
                max_size=3,
            ),
            "disk_io": st.fixed_dictionaries(
                {
                    "devices": entities(
                        st.fixed_dictionaries({}, optional={"read_bytes": number, "write_bytes": number})
                    )
                }
            ),
            "net_io": st.fixed_dictionaries(
                {"interfaces": entities(st.fixed_dictionaries({"rx_bytes": number, "tx_bytes": number}))}
            ),
        },
    )
    message = st.fixed_dictionaries(
        {
            "metrics": st.dictionaries(st.sampled_from([m.key for m in exports.METRIC_EXPORTS]), number),
            "series": st.fixed_dictionaries(
                {},
                optional={"cpu.core": st.lists(number, max_size=4), "disk.percent": entities(number)},
            ),
            "probes": probes.map(msgspec.msgpack.encode),
        }
    )
    return message.map(msgspec.msgpack.encode)


def scraped(snapshots: list[bytes], read: object = None) -> list[str]:
    hosts = [exposition.HostState(f"web-{i}", True, T0, raw) for i, raw in enumerate(snapshots)]
    return exposition.hosts_text(hosts, exposition.LineStarts(read))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.lists(snapshot_bytes(PLAUSIBLE), min_size=1, max_size=3))
def test_plausible_numbers_are_read_in_c_and_exported_as_value_by_value(snapshots: list[bytes]) -> None:
    assert all(typed.numbers(raw) is not None for raw in snapshots)  # no fallback for what agents send
    assert scraped(snapshots) == scraped(snapshots, exposition.checked_numbers)


@settings(max_examples=500, deadline=None)
@given(st.lists(snapshot_bytes(PLAUSIBLE | EDGES) | snapshot_bytes(ANYTHING), min_size=1, max_size=3))
def test_any_snapshot_is_exported_as_value_by_value(snapshots: list[bytes]) -> None:
    # A snapshot the typed path refuses is read value by value: its bad numbers dropped, not the host.
    assert scraped(snapshots) == scraped(snapshots, exposition.checked_numbers)

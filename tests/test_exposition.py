"""/metrics text of hosts (collector.web.exposition): numbers exact, line starts kept between scrapes right."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.web import exposition
from tests.test_web import received

T0 = 1_764_000_000.0


def samples(lines: list[str]) -> dict[str, float]:
    """{series (name and labels): value} of the sample lines."""
    return {k: float(v) for k, _, v in (line.rpartition(" ") for line in lines if not line.startswith("#"))}


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

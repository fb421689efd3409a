"""SeqRanges: the stored sequence numbers of a host as first..last minus gaps."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from collector.store.seqranges import SeqRanges


def members(r: SeqRanges) -> set[int]:
    if r.first is None:
        return set()
    return {s for s in range(r.first, r.last + 1) if s in r}


def test_in_order_has_no_gaps() -> None:
    r = SeqRanges()
    for s in range(1, 6):
        r.add(s)
    assert (r.first, r.last, r.missing()) == (1, 5, [])


def test_gaps_open_and_fill() -> None:
    r = SeqRanges()
    for s in (1, 5, 9):
        r.add(s)
    assert r.missing() == [(2, 4), (6, 8)] and r.missing_count() == 6
    r.add(3)
    assert r.missing() == [(2, 2), (4, 4), (6, 8)]
    for s in (2, 4, 6, 7, 8):
        r.add(s)
    assert r.missing() == [] and 7 in r


def test_older_than_first_extends_backwards() -> None:
    r = SeqRanges(10, 12, [])
    r.add(7)
    assert (r.first, r.missing()) == (7, [(8, 9)])


def test_drop_below_moves_first_past_gaps() -> None:
    r = SeqRanges(1, 20, [(5, 9), (15, 16)])
    r.drop_below(6)
    assert (r.first, r.missing()) == (10, [(15, 16)])
    r.drop_below(25)
    assert r.first is None and r.missing() == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=60), max_size=80))
def test_matches_a_plain_set(seqs: list[int]) -> None:
    r, plain = SeqRanges(), set()
    for s in seqs:
        assert (s in r) == (s in plain)
        if s not in plain:
            r.add(s)
            plain.add(s)
    assert members(r) == plain
    if plain:
        assert r.missing_count() == (max(plain) - min(plain) + 1) - len(plain)

"""The agent's spool: sequence numbers survive restarts, the bound drops the oldest, acks forget."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.spool import Spool, SpoolError


def body(seq: int, size: int = 100) -> bytes:
    return seq.to_bytes(8, "big") + b"x" * (size - 8)


def test_sequence_and_pending_snapshots_survive_a_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 1 << 20)
    assert [spool.append(body) for _ in range(5)] == [1, 2, 3, 4, 5]
    spool.ack([1, 2])
    spool.close()

    spool = Spool(tmp_path / "spool.db", 1 << 20)
    assert spool.last_seq == 5
    assert [seq for seq, _ in spool.after(0, 100)] == [3, 4, 5]
    assert spool.append(body) == 6  # the sequence resumes, never restarts
    assert spool.get(4) == body(4)


def test_acked_snapshots_are_forgotten_and_unknown_acks_are_harmless(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 1 << 20)
    for _ in range(3):
        spool.append(body)
    spool.ack([2, 99, 2])
    assert [seq for seq, _ in spool.after(0, 10)] == [1, 3]
    assert spool.size == 200


def test_a_full_spool_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_bytes=1000)
    for _ in range(15):
        spool.append(body)  # 100 bytes each
    remaining = [seq for seq, _ in spool.after(0, 100)]
    assert remaining == list(range(6, 16))
    assert spool.dropped == 5
    assert spool.size <= 1000


def test_after_pages_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", 1 << 20)
    for _ in range(10):
        spool.append(body)
    assert [seq for seq, _ in spool.after(4, 3)] == [5, 6, 7]


def test_an_unusable_spool_path_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(SpoolError, match="cannot open spool"):
        Spool(tmp_path / "file" / "spool.db", 1 << 20)


def test_a_corrupt_spool_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "spool.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SpoolError, match="cannot open spool"):
        Spool(tmp_path / "spool.db", 1 << 20)

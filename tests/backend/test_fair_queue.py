"""``FairQueue``: round-robin across connections, FIFO within one."""

from __future__ import annotations

import pytest

from backend.fair_queue import FairQueue


def test_lanes_are_served_in_turn_and_fifo_within_each():
    q: FairQueue[str] = FairQueue()
    for job in ("a1", "a2", "a3"):
        q.append(b"a", job)
    q.append(b"b", "b1")
    assert len(q) == 4
    assert q.popleft() == "a1"
    q.append(b"c", "c1")  # a new lane joins at the back
    assert [q.popleft() for _ in range(4)] == ["b1", "a2", "c1", "a3"]
    assert not q and len(q) == 0
    with pytest.raises(IndexError):
        q.popleft()


def test_remove_and_clear():
    q: FairQueue[str] = FairQueue()
    q.append(b"a", "a1")
    q.append(b"b", "b1")
    q.append(b"b", "b2")
    q.remove(b"a", "a1")
    with pytest.raises(ValueError):
        q.remove(b"a", "a1")
    assert len(q) == 2 and q.clear() == ["b1", "b2"] and not q

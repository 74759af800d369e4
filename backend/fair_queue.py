"""``FairQueue``: model work waiting for the worker, one FIFO lane per connection, taken round-robin.

A client that pipelines many frames fills only its own lane: the worker takes one job from each connection in
turn, so another client's single frame waits for at most one job of each other connection, not for a whole burst.

    q: FairQueue[str] = FairQueue()
    q.append(b"a", "a1"); q.append(b"a", "a2"); q.append(b"b", "b1")
    [q.popleft() for _ in range(3)]   # ["a1", "b1", "a2"]
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Generic, TypeVar

J = TypeVar("J")


class FairQueue(Generic[J]):
    """Jobs by connection (its ZeroMQ routing id); ``popleft`` serves the lanes in turn, FIFO within each."""

    def __init__(self) -> None:
        self._lanes: OrderedDict[bytes, deque[J]] = OrderedDict()  # the next lane to serve first
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def append(self, lane: bytes, job: J) -> None:
        """Queue ``job`` at the end of its connection's lane (a new lane is served after the existing ones)."""
        self._lanes.setdefault(lane, deque()).append(job)
        self._size += 1

    def popleft(self) -> J:
        """The oldest job of the lane whose turn it is; that lane then goes to the back. IndexError when empty."""
        if not self._lanes:
            raise IndexError("pop from an empty FairQueue")
        lane, jobs = self._lanes.popitem(last=False)
        job = jobs.popleft()
        if jobs:
            self._lanes[lane] = jobs
        self._size -= 1
        return job

    def remove(self, lane: bytes, job: J) -> None:
        """Drop a queued job (a cancel); ValueError when it is not queued."""
        jobs = self._lanes.get(lane)
        if jobs is None:
            raise ValueError("job not queued")
        jobs.remove(job)
        if not jobs:
            del self._lanes[lane]
        self._size -= 1

    def clear(self) -> list[J]:
        """Empty the queue; returns what was queued, in the order it would have run."""
        out = []
        while self._lanes:
            out.append(self.popleft())
        return out

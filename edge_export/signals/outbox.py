"""A bounded, thread-safe FIFO of outgoing messages that drops the least important first.

While the broker is away, the inspection keeps producing: results, heartbeats, alarms. The
outbox holds at most ``capacity`` messages. When full, the oldest *ordinary* message (a result,
a heartbeat) is dropped; a *priority* message (an alarm or a camera state) is dropped only when
nothing else is left. What is kept drains in the order it was put (one sequence number across
both classes), and every drop is counted.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from dataclasses import dataclass

__all__ = ["Message", "Outbox"]


@dataclass(frozen=True)
class Message:
    """One MQTT publish: ``priority`` marks alarms and states (dropped last)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    priority: bool = False


class Outbox:
    """``put`` never blocks beyond a short lock; ``pop`` returns the oldest kept message or None."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"outbox capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.dropped = 0
        self.dropped_priority = 0
        self._priority: deque[tuple[int, Message]] = deque()
        self._ordinary: deque[tuple[int, Message]] = deque()
        self._seq = itertools.count()
        self._front = itertools.count(-1, -1)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._priority) + len(self._ordinary)

    def put(self, message: Message) -> None:
        with self._lock:
            if len(self) >= self.capacity:
                self._drop_one()
            queue = self._priority if message.priority else self._ordinary
            queue.append((next(self._seq), message))

    def put_front(self, message: Message) -> None:
        """Give back a message taken by :meth:`pop` that could not be sent (it goes out first)."""
        with self._lock:
            if len(self) >= self.capacity:
                self._drop_one()
            queue = self._priority if message.priority else self._ordinary
            queue.appendleft((next(self._front), message))

    def pop(self) -> Message | None:
        with self._lock:
            if not self._priority and not self._ordinary:
                return None
            if not self._ordinary or (
                self._priority and self._priority[0][0] < self._ordinary[0][0]
            ):
                return self._priority.popleft()[1]
            return self._ordinary.popleft()[1]

    def _drop_one(self) -> None:
        if self._ordinary:
            self._ordinary.popleft()
        else:
            self._priority.popleft()
            self.dropped_priority += 1
        self.dropped += 1

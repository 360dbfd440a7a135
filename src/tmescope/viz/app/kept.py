"""The viewer's caches: the latest few values by key, each made once, so that memory stays
bounded however many requests come (a viewer runs for days; every sample of a large cohort may
be visited).

:class:`Kept` holds a few heavy values (a sample's predictions, its measured table, its
thumbnail) and makes a missing one under that key's own lock: concurrent first requests for a
sample make it once, while other samples go on. :class:`KeptBytes` holds many small byte strings
(JPEG tiles) up to a total size.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Kept(Generic[K, V]):
    """The values of the latest ``size`` keys asked for. Thread-safe.

    Keys must come from a bounded set (the store's sample ids, checked before): each key keeps
    its lock.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a cache keeps at least 1 value, got size={size}")
        self._size = size
        self._lock = threading.Lock()  # guards the two maps; never held while making a value
        self._key_locks: dict[K, threading.Lock] = {}
        self._values: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K, make: Callable[[], V]) -> V:
        """The value of ``key``, made by ``make()`` when not kept."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._values:  # a concurrent first request made it meanwhile
                    return self._values[key]
            value = make()
            with self._lock:
                self._values[key] = value
                while len(self._values) > self._size:
                    self._values.popitem(last=False)
            return value


class KeptBytes(Generic[K]):
    """Byte strings by key, the least recently used dropped beyond ``max_bytes`` in all.
    Thread-safe; values are made by the caller (a miss may be made twice, concurrently)."""

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self._values: OrderedDict[K, bytes] = OrderedDict()
        self._bytes = 0

    def get(self, key: K) -> bytes | None:
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
            return value

    def put(self, key: K, value: bytes) -> None:
        if len(value) > self._max_bytes:
            return  # would evict everything else and still not fit
        with self._lock:
            old = self._values.pop(key, None)
            self._bytes += len(value) - (len(old) if old is not None else 0)
            self._values[key] = value
            while self._bytes > self._max_bytes:
                _, dropped = self._values.popitem(last=False)
                self._bytes -= len(dropped)

    @property
    def n_bytes(self) -> int:
        return self._bytes

"""Bounded memory for repeated work: Memo for lookups that every request repeats with the same few keys (model
names, URLs, series), LRU for values worth keeping while they are asked again (embeddings of resent texts)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """`make(key)`, computed once per key; past `limit` keys new ones are computed each time, so odd inputs
    (one-off model names, say) cannot grow it."""

    def __init__(self, make: Callable[[K], V], limit: int) -> None:
        self._make = make
        self._limit = limit
        self._values: dict[K, V] = {}

    def __len__(self) -> int:
        return len(self._values)

    def __call__(self, key: K) -> V:
        try:
            return self._values[key]
        except KeyError:
            pass
        value = self._make(key)
        if len(self._values) < self._limit:
            self._values[key] = value
        return value


class LRU(Generic[K, V]):
    """At most `limit` values, the least recently used dropped first: unlike Memo it keeps what is asked again
    once it is full."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._values: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        self._values.clear()

    def get(self, key: K) -> V | None:
        value = self._values.get(key)
        if value is not None:
            self._values.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self.limit:
            self._values.popitem(last=False)

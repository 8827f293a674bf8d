"""A bounded memo for lookups that every request repeats with the same few keys (model names, URLs, series)."""

from __future__ import annotations

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

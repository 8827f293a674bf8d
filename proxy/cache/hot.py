"""HotRecords: the most recently used records in memory, so a repeated question is answered without a trip to
SQLite's thread (an exact hit then costs a dict lookup) and a semantic hit finds its candidates here first.

Bounded LRU. The cache's write-back worker keeps it in step: every entry that leaves the store (replaced,
evicted, expired, purged) is dropped here by id, and hit counts are not kept here (the store owns them).
A record read from SQLite is only added if nothing was dropped meanwhile (`epoch`): a read that raced with a
delete must not bring the deleted record back.
"""

from __future__ import annotations

from collections import OrderedDict

from ..stores.base import Entry

DEFAULT_CAPACITY = 10_000


class HotRecords:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._by_key: OrderedDict[str, Entry] = OrderedDict()
        self._key_of: dict[int, str] = {}
        self.epoch = 0  # bumped by every drop

    def __len__(self) -> int:
        return len(self._by_key)

    def by_key(self, exact_key: str) -> Entry | None:
        record = self._by_key.get(exact_key)
        if record is not None:
            self._by_key.move_to_end(exact_key)
        return record

    def by_id(self, entry_id: int) -> Entry | None:
        key = self._key_of.get(entry_id)
        return None if key is None else self.by_key(key)

    def put(self, record: Entry, epoch: int | None = None) -> None:
        """Remember `record`; with `epoch` (read before fetching it), only if nothing was dropped since."""
        if self.capacity <= 0 or (epoch is not None and epoch != self.epoch):
            return
        old = self._by_key.pop(record.exact_key, None)
        if old is not None:
            self._key_of.pop(old.id, None)
        self._by_key[record.exact_key] = record
        self._key_of[record.id] = record.exact_key
        while len(self._by_key) > self.capacity:
            _, gone = self._by_key.popitem(last=False)
            self._key_of.pop(gone.id, None)

    def drop(self, entry_id: int) -> None:
        self.epoch += 1
        key = self._key_of.pop(entry_id, None)
        if key is not None:
            record = self._by_key.get(key)
            if record is not None and record.id == entry_id:
                del self._by_key[key]

    def clear(self) -> None:
        self.epoch += 1
        self._by_key.clear()
        self._key_of.clear()

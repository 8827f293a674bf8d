"""Choosing the store: `store.url` (or --store, DEJA_STORE_URL) absent or `sqlite:` is the embedded store in the data
dir; `postgresql://…` is PostgreSQL + pgvector, shared by every replica pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from ..errors import ConfigError
from ..settings import StoreSettings
from .base import Entry, EntryFilter, ExactReader, RemovalListener, Store, StoreKind

POSTGRES_SCHEMES = ("postgresql", "postgres")


def store_kind(url: str | None) -> StoreKind:
    if not url or url == "sqlite:" or url.startswith("sqlite:"):
        return "sqlite"
    if urlsplit(url).scheme in POSTGRES_SCHEMES:
        return "postgresql"
    raise ConfigError(f"store.url: expected sqlite: or postgresql://…, got {mask_url(url)!r}")


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for logs and start-up lines."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def make_store(settings: StoreSettings, data_dir: Path, embedder: str, dim: int,
               extra: Sequence[tuple[str, int]] = ()) -> Store:
    """`extra`: (name, dim) of further embedders (the multilingual one), each with its own indexes."""
    if store_kind(settings.url) == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore(data_dir, embedder, dim, extra)
    from .postgres import PostgresStore

    assert settings.url is not None
    return PostgresStore(settings.url, embedder, dim, extra, pool_size=settings.pool_size)


async def probe_store(settings: StoreSettings, data_dir: Path) -> None:
    """Open and close the store's database without loading anything: `deja serve` checks this before it starts
    listening, so a corrupt file or an unreachable database ends in one line and a non-zero exit."""
    if store_kind(settings.url) == "sqlite":
        from .sqlite import RecordStore

        records = RecordStore(data_dir / "deja.sqlite3")
        await records.open()
        await records.close()
        return
    from .postgres import probe

    assert settings.url is not None
    await probe(settings.url)


class UnavailableStore:
    """Stands in for a store that could not be opened when `store.fail_open` is set: Deja forwards every request
    and caches nothing, and /healthz says why."""

    shared = False

    def __init__(self, kind: StoreKind, location: str, reason: str) -> None:
        self.kind, self.location, self.reason = kind, location, reason

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def listen(self, listener: RemovalListener) -> None:
        return None

    def health(self) -> str | None:
        return self.reason

    async def get_exact(self, exact_key: str) -> Entry | None:
        return None

    async def get_many(self, ids: Iterable[int]) -> dict[int, Entry]:
        return {}

    def exact_reader(self) -> ExactReader | None:
        return None

    def searchable(self, partition: str, embedder: str | None = None) -> bool:
        return False

    def search_now(self, partition: str, vector: np.ndarray, k: int,
                   embedder: str | None = None) -> list[tuple[int, float]] | None:
        return []

    async def search(self, partition: str, vector: np.ndarray, k: int,
                     embedder: str | None = None) -> list[tuple[int, float]]:
        return []

    async def put(self, entries: list[Entry], keep: dict[str, int]) -> list[Entry]:
        return []

    async def touch(self, hits: dict[int, tuple[int, float]]) -> None:
        return None

    async def delete_ids(self, ids: Iterable[int]) -> int:
        return 0

    async def delete_matching(self, selection: EntryFilter) -> int:
        return 0

    async def maintain(self, now: float) -> None:
        return None

    async def checkpoint(self) -> None:
        return None

    async def claim_flight(self, exact_key: str, lease: float) -> bool:
        return True

    async def release_flight(self, exact_key: str) -> None:
        return None

    def sizes(self) -> dict[str, tuple[int, int]]:
        return {}

    async def count_entries(self, selection: EntryFilter) -> int:
        return 0

    async def list_entries(self, selection: EntryFilter, limit: int, offset: int) -> list[Entry]:
        return []

    async def iter_entries(self, selection: EntryFilter, batch: int = 500) -> AsyncIterator[list[Entry]]:
        for _ in ():
            yield []

    async def top_entries(self, limit: int) -> list[Entry]:
        return []

    async def model_totals(self) -> list[tuple[str, int, int]]:
        return []

    async def partition_counts(self) -> dict[str, int]:
        return {}

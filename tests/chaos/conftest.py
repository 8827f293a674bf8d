"""Fixtures of the chaos suite: fake upstreams on real loopback sockets, one per module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..fakes import FakeUpstream, ThreadedServer


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeUpstream, str]]:
    upstream = FakeUpstream()
    with ThreadedServer(upstream.app) as url:
        yield upstream, url


async def unique_answer(request: Request) -> JSONResponse:
    """Every call gets an answer no other call gets (the shared fake numbers calls after an await, so concurrent
    calls can share a number): the isolation fuzz tells exactly which request an answer was made for."""
    body = await request.json()
    return JSONResponse({"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": 0,
                         "model": body.get("model"), "usage": {"prompt_tokens": 1, "completion_tokens": 1,
                                                               "total_tokens": 2},
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": f"answer {uuid.uuid4().hex}"}}]})


@pytest.fixture(scope="module")
def unique_upstream() -> Iterator[str]:
    with ThreadedServer(Starlette(routes=[Route("/v1/chat/completions", unique_answer, methods=["POST"])])) as url:
        yield url

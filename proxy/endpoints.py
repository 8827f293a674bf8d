"""What each cached endpoint brings to the one request flow (flow.py): how its body is checked and keyed (Keying),
which answers may be stored, how a streamed miss is read while it passes, and how a cached answer is shaped.

Misses go to a `Target`: a path under the OpenAI upstream, or an Azure deployment's URL (azure.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import render
from .canonical import CacheControl, CacheRequest, Owner, build_chat_request, validate_body
from .policies import Policy
from .sse import EventReader, StreamAssembler, encode_event, storable
from .terms import Terms, request_terms


class StreamTee(Protocol):
    """Reads a streamed miss as it passes to the client; `result` is the answer to store once `done`."""
    @property
    def done(self) -> bool: ...

    def feed(self, data: bytes) -> bytes: ...

    def result(self) -> dict[str, Any] | None: ...


Builder = Callable[[dict[str, Any], Owner], CacheRequest]
TermsOf = Callable[[CacheRequest, Policy, Mapping[str, str], CacheControl], Terms]


@dataclass(frozen=True, kw_only=True)
class Keying:
    """How an endpoint's requests are checked and keyed (exchange.parse) and whether one is cached (decide.py)."""
    name: str  # the route label on /metrics
    path: str  # under the upstream base
    validate: Callable[[Any], dict[str, Any]]
    build: Builder
    # Why a request must not be cached at all (state held upstream…), or None.
    bypass: Callable[[dict[str, Any]], str | None] = lambda body: None
    terms: TermsOf = request_terms  # the policy as this request is served under it


@dataclass(frozen=True, kw_only=True)
class Endpoint(Keying):
    """An endpoint whose answer is one stored entry: which answers are stored, how a streamed miss is read, how a
    hit is rendered (embeddings, whose answer is assembled from one entry per item, have only their Keying)."""
    shape: render.Shape
    storable: Callable[[Any], bool]
    tee: Callable[[bool], StreamTee]  # (strip_usage) -> a tee for one streamed miss
    # Streams report usage only when asked: Deja asks on every streamed miss, so the answer it stores has usage.
    asks_usage: bool = True


@dataclass(frozen=True)
class Target:
    """Where an endpoint's misses go. `base` None: the configured upstream. Azure: the deployment is the model and
    `scope` (deployment, API version) is part of the key."""
    path: str
    base: str | None = None
    model: str | None = None
    scope: dict[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] | None = None  # replaces the client's headers when forwarding
    # Whether streamed misses may be asked for usage (Azure API versions before 2024-09-01 reject stream_options).
    asks_usage: bool = True

    def keyed(self, body: Any) -> Any:
        """The body as the cache keys it (never what is forwarded)."""
        if not self.scope or not isinstance(body, dict):
            return body
        return {**body, "model": self.model or body.get("model"), "deja_target": self.scope}


class ChunkTee:
    """Passes a chunk stream on while `assembler` reads it. With `strip_usage` (Deja asked for the usage the client
    did not) the usage chunk and the chunks' `usage` fields are taken out again."""

    def __init__(self, assembler: StreamAssembler, strip_usage: bool) -> None:
        self.assembler = assembler
        self.strip_usage = strip_usage
        self.reader = EventReader()

    @property
    def done(self) -> bool:
        return self.assembler.done

    def feed(self, data: bytes) -> bytes:
        if not self.strip_usage:
            self.assembler.feed(data)
            return data
        if self.reader.overflowed:
            return data
        out = []
        for event in self.reader.feed(data):
            chunk = self.assembler.feed_event(event.data)
            if isinstance(chunk, dict) and "usage" in chunk and "error" not in chunk:
                if chunk.get("usage") and not chunk.get("choices"):
                    continue
                out.append(encode_event({k: v for k, v in chunk.items() if k != "usage"}, event.name))
            else:
                out.append(event.encode())
        if self.reader.overflowed:
            self.assembler.failed = True
            out.append(self.reader.spill())
        return b"".join(out)

    def result(self) -> dict[str, Any] | None:
        return self.assembler.completion()


CHAT = Endpoint(
    name="chat/completions", path="/chat/completions", shape=render.CHAT, validate=validate_body,
    build=build_chat_request, storable=storable, tee=lambda strip: ChunkTee(StreamAssembler(), strip))

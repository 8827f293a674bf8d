"""RequestMemo: a body seen recently is not parsed, checked and keyed again.

An exact hit is mostly a repeated request: the same bytes from the same client. Parsing its JSON, validating it and
building its canonical request (two canonical JSON dumps, four SHA-256) cost about as much as the rest of the hit
(bench/RESULTS.md, "speed work"), and their result depends only on the bytes, the endpoint and the headers that
`canonical.KEY_HEADERS` names. So the result is remembered under exactly those; anything that fails to parse or
validate is never remembered, and raises again each time. The parsed bodies are shared by the requests that hit the
memo: nothing on the request path changes them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .canonical import KEY_HEADERS, CacheRequest, owner_of
from .incoming import parse_json
from .limits import check_messages

if TYPE_CHECKING:
    from .endpoints import Keying, Target
    from .services import Services

CAPACITY = 1024
# Bodies beyond this many bytes are parsed each time; the memo holds at most BUDGET bytes of them.
MAX_BODY = 16 * 1024
BUDGET = 4 * 1024 * 1024
KEY_INDEX = {name.encode(): i for i, name in enumerate(KEY_HEADERS)}  # raw ASGI names are lowercase bytes


@dataclass(frozen=True)
class ParsedRequest:
    client_body: Any  # the JSON as the client sent it
    body: dict[str, Any]  # as the cache keys it (Target.keyed), validated
    chat: CacheRequest


class RequestMemo:
    def __init__(self, capacity: int = CAPACITY, max_body: int = MAX_BODY, budget: int = BUDGET) -> None:
        self.capacity, self.max_body, self.budget = capacity, max_body, budget
        self._found: OrderedDict[tuple[Any, ...], ParsedRequest] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._found)

    def key(self, endpoint: Keying, target: Target, raw: bytes,
            values: tuple[str | None, ...]) -> tuple[Any, ...] | None:
        """None for what is not remembered: large bodies, and targets that rewrite the key (Azure deployments)."""
        if len(raw) > self.max_body or target.scope or target.headers is not None or target.base is not None:
            return None
        return (endpoint.name, target.path, raw, *values)

    def known(self, endpoint: Keying, target: Target, raw: bytes,
              headers: Mapping[str, str]) -> ParsedRequest | None:
        """What `parse_request` would return, when it is remembered; None without parsing anything otherwise."""
        key = self.key(endpoint, target, raw, key_values(headers))
        return None if key is None else self.get(key)

    def get(self, key: tuple[Any, ...]) -> ParsedRequest | None:
        found = self._found.get(key)
        if found is not None:
            self._found.move_to_end(key)
        return found

    def put(self, key: tuple[Any, ...], parsed: ParsedRequest) -> None:
        if key in self._found:
            return
        self._found[key] = parsed
        self._bytes += len(key[2])
        while len(self._found) > self.capacity or self._bytes > self.budget:
            old, _ = self._found.popitem(last=False)
            self._bytes -= len(old[2])


def key_values(headers: Mapping[str, str]) -> tuple[str | None, ...]:
    """The first value of each of KEY_HEADERS (as Headers.get gives it), in one pass over the raw ASGI headers."""
    raw = getattr(headers, "raw", None)
    if raw is None:
        return tuple(headers.get(name) for name in KEY_HEADERS)
    values: list[str | None] = [None] * len(KEY_HEADERS)
    for name, value in raw:
        i = KEY_INDEX.get(name)
        if i is not None and values[i] is None:
            values[i] = value.decode("latin-1")
    return tuple(values)


def parse_request(services: Services, raw: bytes, headers: Mapping[str, str], endpoint: Keying,
                  target: Target) -> ParsedRequest:
    """The request's JSON, validated and keyed (OpenAI-shaped errors for bad input), from the memo when seen."""
    memo = services.request_memo
    values = key_values(headers)
    key = memo.key(endpoint, target, raw, values)
    if key is not None and (found := memo.get(key)) is not None:
        return found
    # The builder sees these headers only: what it reads is in the key by construction.
    headers = {name: value for name, value in zip(KEY_HEADERS, values, strict=True) if value is not None}
    settings = services.settings
    client_body = parse_json(raw, settings.max_json_depth)
    body = endpoint.validate(target.keyed(client_body))
    check_messages(body, settings.max_messages)
    policy = services.policies.policy_for(body["model"])
    chat = endpoint.build(body, owner_of(headers, fallback_key=settings.upstream_api_key,
                                         share_across_keys=policy.share_across_keys))
    parsed = ParsedRequest(client_body, body, chat)
    if key is not None:
        memo.put(key, parsed)
    return parsed

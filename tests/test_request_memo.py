"""RequestMemo: a repeated body is keyed once, and never across the headers that separate tenants and namespaces."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from starlette.datastructures import Headers

from proxy.canonical import KEY_HEADERS, owner_of
from proxy.completions_api import COMPLETIONS
from proxy.embeddings_api import EMBEDDINGS
from proxy.endpoints import CHAT, Target
from proxy.errors import BadRequestError
from proxy.policies import PolicySet
from proxy.request_memo import RequestMemo, parse_request
from proxy.responses_api import RESPONSES
from proxy.settings import Settings

from .conftest import default_policies

BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "How do I reset it?"}]}).encode()
KEY_A = {"authorization": "Bearer sk-a"}


def services(policies: PolicySet | None = None, **settings) -> SimpleNamespace:
    return SimpleNamespace(request_memo=RequestMemo(), settings=Settings(**settings),
                           policies=policies or default_policies())


def test_the_same_bytes_from_the_same_key_are_keyed_once():
    app = services()
    first = parse_request(app, BODY, KEY_A, CHAT, Target(CHAT.path))
    assert parse_request(app, bytes(BODY), dict(KEY_A), CHAT, Target(CHAT.path)) is first
    assert len(app.request_memo) == 1


@pytest.mark.parametrize("headers", [{"authorization": "Bearer sk-b"}, {**KEY_A, "x-cache-namespace": "n"},
                                     {**KEY_A, "openai-project": "p"}, {"api-key": "sk-a"}])
def test_other_tenants_and_namespaces_get_their_own_request(headers):
    app = services()
    first = parse_request(app, BODY, KEY_A, CHAT, Target(CHAT.path))
    other = parse_request(app, BODY, headers, CHAT, Target(CHAT.path))
    assert other.chat.partition != first.chat.partition
    assert parse_request(services(), BODY, headers, CHAT, Target(CHAT.path)).chat == other.chat


def test_the_key_headers_alone_key_as_all_the_headers_do():
    raw = [(name.encode(), f"{name}-1".encode()) for name in KEY_HEADERS] + [
        (b"authorization", b"Bearer second"), (b"cache-control", b"no-cache"), (b"x-other", b"y")]
    headers = Headers(raw=raw)
    for endpoint, body in ((CHAT, BODY), (COMPLETIONS, b'{"model": "m", "prompt": "Say hi"}'),
                           (RESPONSES, b'{"model": "m", "input": "hi"}'),
                           (EMBEDDINGS, b'{"model": "m", "input": ["hi", "there"]}')):
        parsed = parse_request(services(), body, headers, endpoint, Target(endpoint.path))
        direct = endpoint.build(parsed.body, owner_of(headers, fallback_key=None, share_across_keys=False))
        assert parsed.chat == direct, endpoint.name
        assert parsed.chat.namespace == "x-cache-namespace-1"


def test_bad_bodies_are_never_remembered_and_fail_each_time():
    app = services(max_messages=1)
    two = json.dumps({"model": "m", "messages": [{"role": "user", "content": "a"}] * 2}).encode()
    for raw in (b'{"model": "m", "messages": [', b'{"model": "m", "messages": []}', two):
        for _ in range(2):
            with pytest.raises(BadRequestError):
                parse_request(app, raw, KEY_A, CHAT, Target(CHAT.path))
    assert len(app.request_memo) == 0


def test_azure_targets_and_large_bodies_are_parsed_each_time():
    app = services()
    azure = Target(CHAT.path, base="https://x.openai.azure.com/openai/deployments/d", model="d", scope={"d": "1"})
    assert parse_request(app, BODY, KEY_A, CHAT, azure) is not parse_request(app, BODY, KEY_A, CHAT, azure)
    large = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 20_000}]}).encode()
    parse_request(app, large, KEY_A, CHAT, Target(CHAT.path))
    assert len(app.request_memo) == 0


def test_the_memo_is_bounded_by_count_and_bytes():
    memo = RequestMemo(capacity=3, budget=10_000)
    app = SimpleNamespace(request_memo=memo, settings=Settings(), policies=default_policies())
    for n in range(5):
        parse_request(app, json.dumps({"model": "m", "messages": [{"role": "user", "content": f"q{n}"}]}).encode(),
                      KEY_A, CHAT, Target(CHAT.path))
    assert len(memo) == 3
    big = json.dumps({"model": "m", "messages": [{"role": "user", "content": "y" * 6000}]}).encode()
    parse_request(app, big, KEY_A, CHAT, Target(CHAT.path))
    parse_request(app, big.replace(b"y", b"z"), KEY_A, CHAT, Target(CHAT.path))
    assert len(memo) == 1

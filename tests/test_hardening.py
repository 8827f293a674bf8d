"""Issue 9's defects, each as the few lines that showed it on main: tenant safety of /modelcache and the server
key, passthrough paths, client mistakes that were 500s, and X-Cache-Status on Deja's own errors."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from proxy.memo import Memo

pytestmark = pytest.mark.anyio

TOKEN = "admin-secret-token"
SERVER_KEY = "sk-server-key-of-the-operator"
MODEL = "gpt-4o-mini"


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def assert_own_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["x-cache-status"] == "ERROR"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.fixture
def server_key(monkeypatch):
    monkeypatch.setenv("DEJA_UPSTREAM_API_KEY", SERVER_KEY)
    return SERVER_KEY


# -- defect 2: /modelcache needs authentication; the admin token alone writes to ModelCache's own partition ------


async def modelcache(proxy, body: dict, headers: dict[str, str] | None = None) -> httpx.Response:
    return await proxy.client.post("/modelcache", json=body, headers=headers or {})


def insert_body(text: str, answer: str, **extra) -> dict:
    return {"type": "insert", "scope": {"model": MODEL}, "chat_info": [{"query": ask(text), "answer": answer}],
            **extra}


async def test_keyless_modelcache_insert_is_refused_and_never_served(make_proxy, server_key):
    async with make_proxy() as proxy:
        refused = await modelcache(proxy, insert_body("What is our refund policy?", "POISONED"))
        assert_own_error(refused, 401)
        await proxy.cache.drain()
        served = await proxy.client.post("/v1/chat/completions",
                                         json={"model": MODEL, "messages": ask("What is our refund policy?")})
        assert served.headers["x-cache-status"] == "MISS"
        assert "POISONED" not in served.text


async def test_admin_token_insert_lands_in_modelcache_own_partition(make_proxy, server_key, monkeypatch):
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", TOKEN)
    async with make_proxy() as proxy:
        admin = {"Authorization": f"Bearer {TOKEN}"}
        written = await modelcache(proxy, insert_body("What is our refund policy?", "from admin"), admin)
        assert written.json()["writeStatus"] == "success"
        found = await modelcache(proxy, {"type": "query", "scope": {"model": MODEL},
                                         "query": ask("What is our refund policy?")}, admin)
        assert found.json()["answer"] == "from admin"
        for headers in ({}, {"Authorization": f"Bearer {TOKEN}"}, {"Authorization": "Bearer sk-a"}):
            chat = await proxy.client.post("/v1/chat/completions", headers=headers,
                                           json={"model": MODEL, "messages": ask("What is our refund policy?")})
            assert chat.headers["x-cache-status"] == "MISS" and "from admin" not in chat.text


async def test_tenant_key_in_header_or_body_writes_that_tenants_entries(proxy):
    by_header = await modelcache(proxy, insert_body("Where is the office?", "Berlin"),
                                 {"Authorization": "Bearer sk-a"})
    by_body = await modelcache(proxy, insert_body("When do we open?", "At nine", auth="sk-a"))
    assert by_header.json()["writeStatus"] == by_body.json()["writeStatus"] == "success"
    await proxy.cache.drain()
    assert (await proxy.chat("Where is the office?", key="sk-a")).json()["choices"][0]["message"]["content"] \
        == "Berlin"
    assert (await proxy.chat("When do we open?", key="sk-a")).headers["x-cache-status"] == "HIT"
    assert (await proxy.chat("When do we open?", key="sk-b")).headers["x-cache-status"] == "MISS"


# -- defect 3: passthrough stays under the upstream base -------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/%2e%2e/_stats", "/v1/..%2f_stats", "/v1/models/%2E%2E/%2E%2E/x",
                                  "/v1/%2e/models"])
async def test_passthrough_refuses_dot_segments(server_key, proxy, upstream, path):
    response = await proxy.client.get(path)
    error = assert_own_error(response, 400)
    assert error["code"] == "invalid_path"
    assert upstream.calls == 0


async def test_passthrough_forwards_a_normalised_path_under_the_base(proxy):
    response = await proxy.client.get("/v1/files/file-abc%252e%252e:cancel", headers={"Authorization": "Bearer k"})
    assert response.status_code == 200 and response.headers["x-cache-status"] == "BYPASS"
    # The upstream sees the client's literal "%2e%2e" text once decoded: still a single segment under /v1.
    assert response.json()["path"] == "/v1/files/file-abc%2e%2e:cancel"



async def test_upstream_urls_parsed_once_still_carry_each_path_and_query(proxy, monkeypatch):
    monkeypatch.setattr(proxy.services.upstream, "url", Memo(httpx.URL, 2))
    for _ in range(2):
        for n in range(4):
            response = await proxy.client.get(f"/v1/models/m{n}?page={n}", headers={"Authorization": "Bearer k"})
            assert (response.json()["path"], response.json()["query"]) == (f"/v1/models/m{n}", f"page={n}")
    assert len(proxy.services.upstream.url) == 2

# -- defect 4: the server key is not an open relay ------------------------------------------------------------


async def test_keyless_requests_are_refused_beyond_loopback(make_proxy, upstream, server_key):
    async with make_proxy(host="0.0.0.0") as proxy:
        for call in (proxy.client.get("/v1/models"),
                     proxy.client.post("/v1/chat/completions", json={"model": MODEL, "messages": ask("hi")})):
            error = assert_own_error(await call, 401)
            assert error["code"] == "missing_api_key" and "client_keys" in error["message"]
        assert upstream.calls == 0
        own = await proxy.chat("hi", key="sk-own")
        assert own.status_code == 200
        assert upstream.requests[-1]["headers"]["authorization"] == "Bearer sk-own"


async def test_keyless_requests_use_the_server_key_on_loopback(server_key, proxy, upstream):
    response = await proxy.client.post("/v1/chat/completions", json={"model": MODEL, "messages": ask("hi")})
    assert response.status_code == 200
    assert upstream.requests[-1]["headers"]["authorization"] == f"Bearer {SERVER_KEY}"


async def test_listed_client_keys_spend_the_server_key_in_their_own_partitions(make_proxy, upstream, server_key):
    digests = [hashlib.sha256(k.encode()).hexdigest() for k in ("team-a", "team-b")]
    async with make_proxy(host="0.0.0.0", client_keys=digests) as proxy:
        first = await proxy.chat("What is the capital of France?", key="team-a")
        assert first.headers["x-cache-status"] == "MISS"
        assert upstream.requests[-1]["headers"]["authorization"] == f"Bearer {SERVER_KEY}"
        assert (await proxy.chat("What is the capital of France?", key="team-a")).headers["x-cache-status"] == "HIT"
        other = await proxy.chat("What is the capital of France?", key="team-b")
        assert other.headers["x-cache-status"] == "MISS"
        # A forged marker header does not turn an unlisted key into the server key.
        await proxy.chat("hello there", key="sk-own", headers={"X-Deja-Use-Upstream-Key": "1"})
        assert upstream.requests[-1]["headers"]["authorization"] == "Bearer sk-own"


# -- defect 7: the client's mistakes are 400s, not 500s -------------------------------------------------------


async def test_deeply_nested_json_is_a_400_naming_the_setting(proxy):
    body = '{"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": ' + "[" * 5000 + "]" * 5000 + "}"
    error = assert_own_error(await proxy.client.post("/v1/chat/completions", content=body,
                                                     headers={"Content-Type": "application/json"}), 400)
    assert "max_json_depth" in error["message"]
    shallow = json.dumps({"model": MODEL, "messages": ask("x"), "tools": json.loads("[" * 60 + "]" * 60)})
    assert (await proxy.client.post("/v1/chat/completions", content=shallow)).status_code == 200


async def test_too_many_messages_is_a_400_naming_the_setting(make_proxy):
    async with make_proxy(max_messages=3) as proxy:
        error = assert_own_error(await proxy.client.post("/v1/chat/completions", json={
            "model": MODEL, "messages": ask("a") * 4}), 400)
        assert "max_messages" in error["message"]


@pytest.mark.parametrize("value", [b"max-age=\xb2", "no-cache, max-age=é".encode("latin-1"), b"\xff\xfe"])
async def test_non_ascii_cache_control_is_ignored_not_forwarded(proxy, upstream, value):
    response = await proxy.client.post("/v1/chat/completions", json={"model": MODEL, "messages": ask("hi")},
                                       headers={"Authorization": "Bearer sk-a", "Cache-Control": value})
    assert response.status_code == 200
    assert "cache-control" not in upstream.requests[-1]["headers"]


async def test_admin_entry_id_and_offset_out_of_range_are_400s(make_proxy, monkeypatch):
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", TOKEN)
    async with make_proxy() as proxy:
        admin = {"Authorization": f"Bearer {TOKEN}"}
        assert_own_error(await proxy.client.get("/admin/entries/%C2%B2", headers=admin), 400)
        assert_own_error(await proxy.client.get("/admin/entries/" + "9" * 40, headers=admin), 400)
        error = assert_own_error(await proxy.client.get("/admin/entries", params={"offset": 10**30},
                                                        headers=admin), 400)
        assert error["param"] == "offset"


async def test_one_nested_import_line_fails_alone(make_proxy, monkeypatch):
    monkeypatch.setenv("DEJA_ADMIN_TOKEN", TOKEN)
    async with make_proxy() as proxy:
        nested = '{"question": "deep", "answer": "x", "params": {"x": ' + "[" * 3000 + "]" * 3000 + "}}"
        lines = "\n".join([json.dumps({"question": "first", "answer": "1"}), nested,
                           json.dumps({"question": "last", "answer": "2"})])
        response = await proxy.client.post("/admin/import", content=lines, params={"model": MODEL},
                                           headers={"Authorization": f"Bearer {TOKEN}", "X-Import-Api-Key": "sk-a"})
        report = response.json()
        assert response.status_code == 200 and report["imported"] == 2 and report["failed"] == 1
        assert "max_json_depth" in report["errors"][0]


# -- defect 9: Deja's own errors say X-Cache-Status: ERROR ----------------------------------------------------


class Unreachable(httpx.AsyncBaseTransport):
    def __init__(self, error: type[httpx.TransportError]) -> None:
        self.error = error

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise self.error("simulated", request=request)


@pytest.mark.parametrize(("error", "status"), [(httpx.ConnectError, 502), (httpx.ReadTimeout, 504)])
async def test_upstream_failures_carry_cache_status_error(make_proxy, error, status):
    async with make_proxy(transport=Unreachable(error)) as proxy:
        assert_own_error(await proxy.chat("hi"), status)
        assert_own_error(await proxy.client.get("/v1/models"), status)


async def test_own_4xx_carry_cache_status_error(make_proxy):
    async with make_proxy(max_body_bytes=100) as proxy:
        assert_own_error(await proxy.client.post("/v1/chat/completions", content=b"{nope"), 400)
        assert_own_error(await proxy.client.post("/v1/chat/completions", content=b"x" * 200), 413)
        assert_own_error(await proxy.client.get("/nowhere"), 404)
        assert_own_error(await proxy.client.post("/healthz"), 405)

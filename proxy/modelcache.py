"""`POST /modelcache`: ModelCache's API over Deja's cache, so ModelCache clients switch by changing the URL.

The body is a JSON object, or a JSON string holding one (ModelCache's examples send `json=json.dumps(data)`).
Entries are the proxy's own: keys come from `build_chat_request` on `{"model": scope.model, "messages": query}`,
with the caller's tenant and the namespace from X-Cache-Namespace. Every call must authenticate (401 otherwise), one
of two ways:
  - with a tenant's API key (`Authorization: Bearer <key>`, or `"auth": "<key>"` in the body for clients that
    cannot set headers): entries are that tenant's, exactly as for `/v1/chat/completions` (the shared tenant when
    the model's policy shares across keys). The configured upstream key is never assumed: without a key of its
    own an insert could otherwise poison what keyless chat clients are served;
  - with the admin token alone: entries live in ModelCache's own partition, which no chat client reaches.
A proxy request with the same key, model and messages finds an inserted answer, and a query finds what the proxy
stored. Look-ups go through SemanticCache.lookup, the one place that decides a hit.

Answers use ModelCache's shapes and error codes (101 unreadable body, 102 unknown type, 103 bad parameters,
201 query failed, 301 insert failed, 402 remove failed). `register` is a successful no-op: Deja creates a
partition when its first entry is stored.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .access import token_matches
from .canonical import SHARED_TENANT, CacheRequest, Owner, build_chat_request, sha256_hex, tenant_of, validate_body
from .errors import DejaError, UnauthorizedError
from .incoming import read_body, services_of
from .render import answer_text, text_completion
from .services import Services
from .status import Status
from .stores.base import EntryFilter

log = logging.getLogger("deja.modelcache")

TYPES = ["query", "insert", "remove", "register"]
REMOVE_TYPES = ("truncate_by_model", "delete_by_id")
# Entries written with the admin token alone: a tenant no chat request can derive (chat tenants hash "tenant").
MODELCACHE_TENANT = sha256_hex("modelcache")


@dataclass(frozen=True)
class Caller:
    """Who a ModelCache call acts for: a tenant's key (`credential`, as chat clients send it), or, with None,
    ModelCache's own partition."""
    credential: str | None
    organization: str = ""
    project: str = ""
    namespace: str = ""

    def tenant(self, share_across_keys: bool) -> str:
        """The tenant a chat request with the same key would have under a policy that shares or not."""
        if self.credential is None:
            return MODELCACHE_TENANT
        return SHARED_TENANT if share_across_keys else tenant_of(self.credential, self.organization, self.project)


def caller_of(services: Services, headers: Mapping[str, str], body: Mapping[str, Any]) -> Caller | None:
    authorization = headers.get("authorization")
    admin = token_matches(services.admin_token, authorization)
    auth = body.get("auth")
    key = auth if isinstance(auth, str) and auth.strip() else None
    if key is None and not admin:
        key = authorization or headers.get("api-key") or headers.get("x-api-key")
    if not key and not admin:
        return None
    return Caller((key if " " in key else f"Bearer {key}") if key else None,
                  headers.get("openai-organization", ""), headers.get("openai-project", ""),
                  headers.get("x-cache-namespace", ""))


class ModelCacheError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def query_result(code: int, desc: str, *, hit: bool = False, delta: Any = 0, hit_query: str = "",
                 answer: str = "") -> dict[str, Any]:
    return {"errorCode": code, "errorDesc": desc, "cacheHit": hit, "delta_time": delta, "hit_query": hit_query,
            "answer": answer}


def write_result(code: int, desc: str, **extra: Any) -> dict[str, Any]:
    return {"errorCode": code, "errorDesc": desc, "writeStatus": "success" if code == 0 else "exception", **extra}


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8"))
        if isinstance(body, str):
            body = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelCacheError(101, f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ModelCacheError(101, "the body must be a JSON object (or a JSON string holding one)")
    return body


def model_of(body: Mapping[str, Any]) -> str:
    scope = body.get("scope")
    model = scope.get("model") if isinstance(scope, dict) else None
    if not isinstance(model, str) or not model:
        raise ModelCacheError(103, "scope.model: expected a non-empty string")
    return model


def chat_request(services: Services, model: str, messages: Any, caller: Caller, where: str) -> CacheRequest:
    policy = services.policies.policy_for(model)
    try:
        body = validate_body({"model": model, "messages": messages})
        return build_chat_request(body, Owner(caller.tenant(policy.share_across_keys), caller.namespace))
    except DejaError as exc:
        raise ModelCacheError(103, f"{where}: {exc.message}") from exc


def completion_for(model: str, answer: str, now: float) -> dict[str, Any]:
    """The chat.completion the proxy serves for an inserted answer."""
    return text_completion(answer, model, answer_id=f"chatcmpl-modelcache-{int(now * 1000)}", created=int(now))


async def handle_query(services: Services, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
    started = time.perf_counter()
    model = model_of(body)
    chat = chat_request(services, model, body.get("query"), caller, "query")
    policy = services.policies.policy_for(model)
    if policy.mode == "off":  # counted and logged as a chat request's bypass (decide.py)
        log.debug("/modelcache bypasses the cache: policy off")
        services.metrics.observe_request(model, Status.BYPASS)
        return query_result(0, "", delta=f"{time.perf_counter() - started:.2f}s")
    try:
        lookup = await services.cache.lookup(chat, policy, None)
    except Exception as exc:
        log.exception("modelcache query failed")
        services.metrics.count_error("store", exc)
        return query_result(201, f"query failed: {type(exc).__name__}")
    services.metrics.observe_lookup(time.perf_counter() - started)
    delta = f"{time.perf_counter() - started:.2f}s"
    hit = lookup.hit
    if hit is None:
        services.metrics.observe_request(model, Status.MISS)
        return query_result(0, "", delta=delta)
    services.cache.record_hit(hit.record.id)
    services.metrics.observe_hit(model, hit, chat.question)
    return query_result(0, "", hit=True, delta=delta, hit_query=hit.record.question,
                        answer=answer_text(hit.record.response))


async def handle_insert(services: Services, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
    model = model_of(body)
    chat_info = body.get("chat_info")
    if not isinstance(chat_info, list) or not chat_info:
        raise ModelCacheError(103, "chat_info: expected a non-empty list of {query, answer}")
    policy = services.policies.policy_for(model)
    if policy.mode == "off":
        return write_result(301, f"caching is off for model {model!r} by policy {policy.name!r}")
    pairs = []
    for i, item in enumerate(chat_info):
        if not isinstance(item, dict) or not isinstance(item.get("answer"), str):
            raise ModelCacheError(103, f"chat_info[{i}]: expected {{query: [messages], answer: string}}")
        pairs.append((chat_request(services, model, item.get("query"), caller, f"chat_info[{i}].query"),
                      item["answer"]))
    try:
        for chat, answer in pairs:
            await services.cache.store_now(chat, policy, completion_for(model, answer, time.time()))
    except Exception as exc:
        log.exception("modelcache insert failed")
        services.metrics.count_error("store", exc)
        return write_result(301, f"insert failed: {type(exc).__name__}")
    return write_result(0, "")


async def handle_remove(services: Services, body: dict[str, Any], caller: Caller) -> dict[str, Any]:
    """Only the caller's own entries (its tenant) are removed, whatever ids it names."""
    model = model_of(body)
    remove_type = body.get("remove_type")
    tenant = caller.tenant(services.policies.policy_for(model).share_across_keys)
    cache = services.cache
    try:
        if remove_type == "truncate_by_model":
            count = await cache.purge(EntryFilter(model=model, tenant=tenant))
        elif remove_type == "delete_by_id":
            ids = body.get("id_list")
            if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) or
                                                    isinstance(i, str) and i.isdigit() for i in ids):
                raise ModelCacheError(103, "id_list: expected a list of entry ids")
            wanted = [int(i) for i in ids]
            records = await cache.store.get_many(wanted)
            own = [i for i, r in records.items() if r.tenant == tenant and r.model == model]
            count = await cache.delete_entries(own)
        else:
            raise ModelCacheError(103, f"remove_type: expected one of {list(REMOVE_TYPES)}, got {remove_type!r}")
    except ModelCacheError:
        raise
    except Exception as exc:
        log.exception("modelcache remove failed")
        services.metrics.count_error("store", exc)
        return write_result(402, f"remove failed: {type(exc).__name__}",
                            response={"status": "failed", "delete_count": 0})
    return write_result(0, "", response={"status": "success", "delete_count": count})


async def modelcache(request: Request) -> Response:
    services = services_of(request)
    raw = await read_body(request, services.settings.max_body_bytes)  # 413 in OpenAI shape when too large
    try:
        body = parse_body(raw)
        caller = caller_of(services, request.headers, body)
        if caller is None:
            raise UnauthorizedError("/modelcache needs a tenant's API key (Authorization: Bearer <key>, or \"auth\" "
                                    "in the body) or the admin token.", code="missing_api_key")
        kind = body.get("type")
        if kind not in TYPES:
            return JSONResponse(query_result(102, f"type exception, should one of {TYPES}"))
        if kind == "query":
            result = await handle_query(services, body, caller)
        elif kind == "insert":
            result = await handle_insert(services, body, caller)
        elif kind == "remove":
            result = await handle_remove(services, body, caller)
        else:
            model_of(body)
            result = write_result(0, "", response="create_success")
    except ModelCacheError as exc:
        return JSONResponse(query_result(exc.code, exc.message))  # ModelCache answers these in the query shape
    return JSONResponse(result)

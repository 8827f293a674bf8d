"""The canonical form of a chat completion request: what separates cache entries and what may differ.

Entries are separated by construction, never filtered after the fact:
  partition = sha256(tenant, model, answer-changing parameters, namespace)   -> its own vector index
  context   = system/developer prompts + earlier turns + non-text parts of the final turn (compared per candidate)
  question  = the text of the final user turn: the only thing that may be worded differently
  exact key = sha256(partition, context, question)

Only the final question is embedded. The context decides *which* conversation a question belongs to and is
compared on its own, so a long shared history cannot drown a changed question (and vice versa).

Tenant and namespace come as an `Owner`: read from the credential headers on the HTTP path (`owner_of`), given
as they are by ModelCache, `deja import` and `deja eval`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import BadRequestError
from .limits import ascii_int

# Request fields that never change the answer; every other field is part of the partition key.
BOOKKEEPING_FIELDS = frozenset({
    "messages",  # keyed separately (context + question)
    "stream",  # a hit is served in either shape
    "stream_options",
    "user",
    "metadata",
    "store",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
})
ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
MAX_NAMESPACE_LENGTH = 128
# The only headers owner_of reads, so the only ones a CacheRequest depends on: request_memo.py remembers built
# requests under their values.
KEY_HEADERS = ("authorization", "api-key", "x-api-key", "openai-organization", "openai-project", "x-cache-namespace")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def sha256_hex(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def normalise_text(text: str) -> str:
    """Whitespace that cannot change meaning: line endings, trailing spaces, leading/trailing blank space.
    Inner runs of spaces are kept: they matter in code and tables."""
    return _TRAILING_SPACE.sub("\n", text.replace("\r\n", "\n")).strip()


def _normalise_message(message: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(message)
    content = out.get("content")
    if isinstance(content, str):
        out["content"] = normalise_text(content)
    elif isinstance(content, list):
        out["content"] = [
            {**part, "text": normalise_text(part["text"])}
            if part.get("type") == "text" and isinstance(part.get("text"), str) else part
            for part in content
        ]
    return out


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


def _non_text_parts(content: Any) -> list[Any]:
    if isinstance(content, list):
        return [p for p in content if p.get("type") != "text"]
    return []


def require_model(body: Any) -> dict[str, Any]:
    """A JSON object naming a model and, if it says whether to stream, saying it with a boolean."""
    if not isinstance(body, dict):
        raise BadRequestError("The request body must be a JSON object.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadRequestError("you must provide a model parameter", param="model", code="missing_model")
    if not isinstance(body.get("stream", False), bool):
        raise BadRequestError("'stream' must be a boolean", param="stream")
    return body


def validate_body(body: Any) -> dict[str, Any]:
    """Reject what the upstream would reject anyway, with the same OpenAI error shape, before any cache work."""
    require_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequestError("'messages' must be a non-empty array of message objects", param="messages")
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise BadRequestError(f"{where} must be an object", param=where)
        role = message.get("role")
        if role not in ROLES:
            raise BadRequestError(f"{where}.role: unknown role {role!r}; expected one of {sorted(ROLES)}",
                                  param=f"{where}.role")
        content = message.get("content")
        if isinstance(content, list):
            for j, part in enumerate(content):
                if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                    raise BadRequestError(f"{where}.content[{j}] must be an object with a 'type'",
                                          param=f"{where}.content")
        elif content is not None and not isinstance(content, str):
            raise BadRequestError(f"{where}.content must be a string, an array of parts or null",
                                  param=f"{where}.content")
    return body


def tenant_of(credential: str, organization: str = "", project: str = "") -> str:
    """SHA-256 of an upstream credential as a client sends it (`Bearer sk-…`, an `api-key` value; "" for none),
    plus organisation/project, which change what a key may see."""
    return sha256_hex("tenant", credential, organization, project)


SHARED_TENANT = sha256_hex("shared")  # a policy's share_across_keys: one tenant for every key


@dataclass(frozen=True)
class Owner:
    """Whose entries a request reads and writes: its tenant and namespace (both part of the partition)."""

    tenant: str
    namespace: str = ""

    def __post_init__(self) -> None:
        if len(self.namespace) > MAX_NAMESPACE_LENGTH:
            raise BadRequestError(f"X-Cache-Namespace is longer than {MAX_NAMESPACE_LENGTH} characters")


def owner_of(headers: Mapping[str, str], *, fallback_key: str | None, share_across_keys: bool) -> Owner:
    """An HTTP request's owner, from its credential headers (the configured upstream key when it sends none) and
    X-Cache-Namespace. Reads only KEY_HEADERS."""
    namespace = headers.get("x-cache-namespace", "")
    if share_across_keys:
        return Owner(SHARED_TENANT, namespace)
    credential = headers.get("authorization") or headers.get("api-key") or headers.get("x-api-key")
    if not credential and fallback_key:
        credential = f"Bearer {fallback_key}"
    return Owner(tenant_of(credential or "", headers.get("openai-organization", ""),
                           headers.get("openai-project", "")), namespace)


@dataclass(frozen=True)
class CacheRequest:
    """A request in the form the cache keys it, whatever the endpoint (chat, legacy completions, Responses API,
    one embeddings input): the partition, the context and the question."""

    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool
    tenant: str
    namespace: str
    partition: str
    context_digest: str
    context_text: str
    question: str
    exact_key: str
    # Only a final user turn made of text can be matched by meaning; anything else is exact-only.
    semantic_ok: bool


def build_cache_request(body: dict[str, Any], owner: Owner, *, params: dict[str, Any], context: Any,
                        context_text: str, question: str, semantic_ok: bool) -> CacheRequest:
    """`params`: every answer-changing field but the conversation; `context`: what comes before the question."""
    partition = sha256_hex("partition", owner.tenant, canonical_json(params), owner.namespace)
    context_digest = sha256_hex("context", canonical_json(context))
    stream_options = body.get("stream_options")
    return CacheRequest(
        body=body,
        model=body["model"],
        stream=bool(body.get("stream", False)),
        include_usage=isinstance(stream_options, dict) and bool(stream_options.get("include_usage")),
        tenant=owner.tenant,
        namespace=owner.namespace,
        partition=partition,
        context_digest=context_digest,
        context_text=context_text,
        question=question,
        exact_key=exact_key(partition, context_digest, question),
        semantic_ok=semantic_ok,
    )


def exact_key(partition: str, context_digest: str, question: str) -> str:
    return sha256_hex("exact", partition, context_digest, question)


def with_question(request: CacheRequest, question: str) -> CacheRequest:
    """The same request asking `question` instead: one item of an embeddings batch (same partition and context)."""
    return dataclasses.replace(request, question=question,
                               exact_key=exact_key(request.partition, request.context_digest, question))


def build_chat_request(body: dict[str, Any], owner: Owner) -> CacheRequest:
    params = {k: v for k, v in body.items() if k not in BOOKKEEPING_FIELDS}
    messages = [_normalise_message(m) for m in body["messages"]]
    *earlier, final = messages
    final_rest = {k: v for k, v in final.items() if k != "content"}
    context = [*earlier, {**final_rest, "non_text": _non_text_parts(final.get("content"))}]
    question = normalise_text(text_of(final.get("content")))
    context_text = "\n".join(f"{m['role']}: {text_of(m.get('content'))}" for m in earlier)
    return build_cache_request(body, owner, params=params, context=context, context_text=context_text,
                               question=question, semantic_ok=final.get("role") == "user" and bool(question))


@dataclass(frozen=True)
class CacheControl:
    no_store: bool = False
    no_cache: bool = False
    max_age: int | None = None


def parse_cache_control(value: str | None) -> CacheControl:
    """RFC 9111 request directives we honour; unknown or malformed directives are ignored, as HTTP caches do."""
    if not value:
        return CacheControl()
    no_store = no_cache = False
    max_age = None
    for directive in value.lower().split(","):
        name, _, arg = directive.strip().partition("=")
        if name == "no-store":
            no_store = True
        elif name == "no-cache":
            no_cache = True
        elif name == "max-age" and (seconds := ascii_int(arg.strip().strip('"'))) is not None:
            max_age = seconds
    return CacheControl(no_store, no_cache, max_age)

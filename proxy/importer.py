"""Bulk import of question/answer pairs (`deja import`, and the app's admin import): JSONL in, cache entries out.

Two line shapes:
  simple:  {"question": str | "messages": [...], "answer": str | "response": {chat.completion},
            "model"?: str, "namespace"?: str, "params"?: {...}}
           keyed exactly as the proxy keys a request with that body, for one tenant (an API key) or shared;
  export:  {"id", "model", "namespace", "tenant", "partition", "exact_key", "context_digest", "context_text",
            "question", "response", "created_at", "expires_at", "hits"} as `deja export` writes them, restored as
            they were (the question is embedded again with the current model; already expired lines are skipped).
The file is streamed; every BATCH lines are embedded in one call and stored in one transaction.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .cache.semantic import SemanticCache
from .canonical import SHARED_TENANT, Owner, build_chat_request, tenant_of, validate_body
from .completions_api import storable as completion_storable
from .embeddings_api import is_embedding
from .errors import DejaError
from .limits import DEFAULT_MAX_JSON_DEPTH, loads_bounded
from .nonanswers import skip_reason
from .policies import PolicySet
from .render import text_completion
from .responses_api import storable as response_storable
from .sse import storable
from .stores.base import Entry

BATCH = 256
# One JSONL line at most (an export line holds one chat.completion); longer lines are reported, not read in.
MAX_LINE_BYTES = 1 << 20
MAX_ERRORS_KEPT = 20
EXPORT_FIELDS = frozenset({"partition", "exact_key", "tenant", "context_digest"})


class ImportLineError(ValueError):
    """One line that cannot be imported; the import goes on without it."""


@dataclass
class ImportReport:
    lines: int = 0
    imported: int = 0
    skipped: int = 0  # expired, or its policy caches nothing
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, "line N: why"


@dataclass(frozen=True)
class _Pending:
    record: Entry
    embed: bool
    keep: int


def _completion(answer: str, model: str) -> dict[str, Any]:
    digest = hashlib.sha256(f"{model}\x00{answer}".encode()).hexdigest()[:24]
    return text_completion(answer, model, answer_id=f"chatcmpl-import-{digest}", created=0)


class LineParser:
    def __init__(self, policies: PolicySet, *, tenant_key: str | None, shared: bool, model: str | None,
                 namespace: str | None, now: float) -> None:
        self.policies = policies
        self.tenant_key, self.shared = tenant_key, shared
        self.model, self.namespace, self.now = model, namespace, now

    def parse(self, line: str) -> _Pending | None:
        try:
            obj = loads_bounded(line, DEFAULT_MAX_JSON_DEPTH)
        except ValueError as exc:
            raise ImportLineError(f"not JSON: {exc}") from exc
        except DejaError as exc:
            raise ImportLineError(exc.message) from exc
        if not isinstance(obj, dict):
            raise ImportLineError("expected a JSON object")
        return self._export(obj) if EXPORT_FIELDS <= obj.keys() else self._simple(obj)

    def _simple(self, obj: dict[str, Any]) -> _Pending | None:
        if not self.shared and not self.tenant_key:
            raise ImportLineError("a question/answer line needs the tenant's API key, or a shared import "
                                  "(export lines name their tenant)")
        model = obj.get("model") or self.model
        if not isinstance(model, str):
            raise ImportLineError("no model: give the line a 'model' or the import a default model")
        messages = obj.get("messages")
        if messages is None:
            if not isinstance(obj.get("question"), str):
                raise ImportLineError("expected 'question' (a string) or 'messages'")
            messages = [{"role": "user", "content": obj["question"]}]
        params = obj.get("params") or {}
        if not isinstance(params, dict):
            raise ImportLineError("'params' must be an object")
        response = obj.get("response")
        if response is None:
            if not isinstance(obj.get("answer"), str):
                raise ImportLineError("expected 'answer' (a string) or 'response' (a chat.completion)")
            response = _completion(obj["answer"], model)
        elif not storable(response):
            raise ImportLineError("'response' is not a complete chat.completion")
        policy = self.policies.policy_for(model)
        if policy.mode == "off":
            return None
        if (reason := skip_reason(response, allow_truncated=policy.cache_truncated)) is not None:
            raise ImportLineError(f"'response' is not an answer to keep ({reason})")
        namespace = obj.get("namespace", self.namespace)
        tenant = SHARED_TENANT if self.shared or policy.share_across_keys else tenant_of(
            f"Bearer {self.tenant_key}" if self.tenant_key else "")
        try:
            chat = build_chat_request(validate_body({**params, "model": model, "messages": messages}),
                                      Owner(tenant, str(namespace) if namespace else ""))
        except DejaError as exc:
            raise ImportLineError(exc.message) from exc
        embed = policy.mode == "semantic" and chat.semantic_ok
        return _Pending(Entry(
            exact_key=chat.exact_key, partition=chat.partition, tenant=chat.tenant, model=model,
            namespace=chat.namespace, context_digest=chat.context_digest, context_text=chat.context_text,
            question=chat.question, response=response, embedder=None, vector=None, created_at=self.now,
            expires_at=self.now + policy.ttl if policy.ttl else None), embed, policy.max_entries)

    def _export(self, obj: dict[str, Any]) -> _Pending | None:
        try:
            expires_at = obj.get("expires_at")
            record = Entry(
                exact_key=str(obj["exact_key"]), partition=str(obj["partition"]), tenant=str(obj["tenant"]),
                model=str(obj["model"]), namespace=str(obj.get("namespace") or ""),
                context_digest=str(obj["context_digest"]), context_text=str(obj.get("context_text") or ""),
                question=str(obj.get("question") or ""), response=obj["response"], embedder=None, vector=None,
                created_at=float(obj.get("created_at") or self.now),
                expires_at=None if expires_at is None else float(expires_at), hits=int(obj.get("hits") or 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ImportLineError(f"bad export line: {exc!r}") from exc
        if not exported_answer(record.response):
            raise ImportLineError("'response' is not a complete answer of a cached endpoint")
        if record.expires_at is not None and record.expires_at <= self.now:
            return None
        policy = self.policies.policy_for(record.model)
        by_meaning = policy.mode == "semantic" and bool(record.question) and not is_embedding(record.response)
        return _Pending(record, by_meaning, policy.max_entries)


def exported_answer(response: Any) -> bool:
    """What an exported entry may hold: a chat, legacy or Responses API answer, or one embedding."""
    return storable(response) or completion_storable(response) or response_storable(response) or is_embedding(
        response)


async def split_lines(chunks: AsyncIterable[bytes], max_line: int = MAX_LINE_BYTES
                      ) -> AsyncIterator[bytes | ImportLineError]:
    """Lines of a streamed JSONL body, holding at most `max_line` bytes: a longer line is skipped to its end and
    reported in its place, so one huge line costs neither memory nor the rest of the import."""
    buffer = b""
    oversized = False
    async for chunk in chunks:
        buffer += chunk
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                break
            line, buffer = buffer[:cut], buffer[cut + 1:]
            if oversized or len(line) > max_line:
                yield ImportLineError(f"line longer than {max_line} bytes")
                oversized = False
            else:
                yield line
        if len(buffer) > max_line:
            buffer, oversized = b"", True
    if oversized or len(buffer) > max_line:
        yield ImportLineError(f"line longer than {max_line} bytes")
    elif buffer:
        yield buffer


async def import_lines(cache: SemanticCache, policies: PolicySet,
                       lines: AsyncIterable[str | bytes | ImportLineError], *,
                       tenant_key: str | None, shared: bool, model: str | None = None, namespace: str | None = None,
                       progress: Callable[[ImportReport], None] | None = None, batch: int = BATCH) -> ImportReport:
    """Import JSONL `lines` into a started cache; bad lines are counted and reported, not fatal."""
    parser = LineParser(policies, tenant_key=tenant_key, shared=shared, model=model, namespace=namespace,
                        now=cache.clock())
    report = ImportReport()
    pending: list[_Pending] = []
    async for raw in lines:
        if isinstance(raw, (str, bytes)) and not raw.strip():
            continue
        report.lines += 1
        try:
            if isinstance(raw, ImportLineError):
                raise raw
            try:
                line = raw.decode() if isinstance(raw, bytes) else raw
            except UnicodeDecodeError as exc:
                raise ImportLineError(f"not UTF-8 (byte {exc.start})") from exc
            item = parser.parse(line)
        except ImportLineError as exc:
            report.failed += 1
            if len(report.errors) < MAX_ERRORS_KEPT:
                report.errors.append(f"line {report.lines}: {exc}")
            continue
        if item is None:
            report.skipped += 1
            continue
        pending.append(item)
        if len(pending) >= batch:
            report.imported += await _flush(cache, pending)
            pending = []
            if progress is not None:
                progress(report)
    if pending:
        report.imported += await _flush(cache, pending)
    if progress is not None:
        progress(report)
    return report


async def _flush(cache: SemanticCache, pending: list[_Pending]) -> int:
    wanted = [p for p in pending if p.embed]
    vectors = await cache.embed([p.record.question for p in wanted])
    by_item = {id(p): v for p, v in zip(wanted, vectors, strict=True)}
    records, keep = [], {}
    for p in pending:
        routed = by_item.get(id(p))
        records.append(p.record if routed is None else replace(p.record, vector=routed[0], embedder=routed[1]))
        keep[p.record.partition] = p.keep
    return await cache.store_batch(records, keep)


def progress_bar(total_bytes: int) -> tqdm[Any]:
    """A stderr bar by bytes read (the line count of a large file is not known up front)."""
    return tqdm(total=total_bytes, desc="importing", unit="B", unit_scale=True, file=sys.stderr, leave=False)


def show_report(bar: tqdm[Any], report: ImportReport) -> None:
    bar.set_postfix_str(f"{report.imported} imported, {report.skipped} skipped, {report.failed} failed")


async def read_lines(path: Path, bar: tqdm[Any] | None = None) -> AsyncIterator[bytes | ImportLineError]:
    async def chunks() -> AsyncIterator[bytes]:
        with path.open("rb") as f:
            while block := f.read(1 << 16):
                if bar is not None:
                    bar.update(len(block))
                yield block

    async for line in split_lines(chunks()):
        yield line

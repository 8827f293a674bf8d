"""Entries as the admin API and the `deja` CLI select and list them: filters and numbers from query parameters,
JSON bodies or flags (unknown filters refused), and the one-entry summary of a listing."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .errors import BadRequestError
from .render import answer_text
from .stores.base import Entry, EntryFilter

# Entries a listing shows unless asked for more, and the characters of each answer it shows.
DEFAULT_LIMIT = 50
ANSWER_PREVIEW = 300


def number(name: str, value: Any, *, integer: bool, low: float, high: float | None = None) -> float:
    """A number from a query parameter, a JSON body or a flag, within bounds (a 400 naming it otherwise)."""
    if isinstance(value, str):
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            raise BadRequestError(f"{name}: expected {'an integer' if integer else 'a number'}, got {value!r}",
                                  param=name) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        raise BadRequestError(f"{name}: expected {'an integer' if integer else 'a number'}, got {value!r}",
                              param=name)
    if not math.isfinite(value) or value < low or (high is not None and value > high):
        bounds = f"{low:g}..{high:g}" if high is not None else f">= {low:g}"
        raise BadRequestError(f"{name}: expected {bounds}, got {value!r}", param=name)
    return value


def parse_filter(values: Mapping[str, Any], allowed: tuple[str, ...], now: float) -> EntryFilter:
    """Filters from query parameters or a JSON body. Unknown keys are refused: a typo must not widen a purge."""
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise BadRequestError(f"unknown filter {unknown[0]!r} (known: {', '.join(allowed)})", param=unknown[0])
    strings: dict[str, str | None] = {}
    for key in ("model", "namespace", "tenant", "partition", "q"):
        value = values.get(key)
        if value is not None and not isinstance(value, str):
            raise BadRequestError(f"{key}: expected a string, got {value!r}", param=key)
        strings[key] = value
    for key in ("model", "tenant", "partition", "q"):
        if strings[key] == "":
            strings[key] = None  # an empty search box means no filter; namespace="" is the default namespace
    older_than = values.get("older_than")
    created_before = None
    if older_than is not None:
        created_before = now - number("older_than", older_than, integer=False, low=0)
    return EntryFilter(model=strings["model"], namespace=strings["namespace"], tenant=strings["tenant"],
                       partition=strings["partition"], text=strings["q"], created_before=created_before)


def summary(record: Entry) -> dict[str, Any]:
    answer = answer_text(record.response)
    return {"id": record.id, "model": record.model, "namespace": record.namespace, "tenant": record.tenant,
            "partition": record.partition, "question": record.question,
            "answer": answer[:ANSWER_PREVIEW] + ("…" if len(answer) > ANSWER_PREVIEW else ""),
            "created_at": record.created_at, "expires_at": record.expires_at, "hits": record.hits}

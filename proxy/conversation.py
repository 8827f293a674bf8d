"""Conversations by meaning: when an answer cached in one conversation may answer the same question in another.

The final question has already passed the threshold and the guard; this decides whether the earlier turns may
differ. System and developer prompts, tool calls, names and non-text parts never may: only plain user/assistant
text turns are compared, and only when the context can be read back exactly (its digest is recomputed).

- A self-contained last question (it names its own subject and refers back to nothing: no "it", "that one",
  "yes please") is judged by itself: the earlier turns are small talk or another topic.
- Otherwise the turns are aligned in order. Assistant turns must be identical: after a cached first answer a
  client resends that very text, while an assistant that said something else (another offer, options in another
  order) changes what "yes please" or "the second one" means. User turns may be reworded (cosine at the long
  question bar, and no guard conflict: a changed number, name or negation refuses). Whole extra exchanges
  (user + assistant) on one side only are a detour and are skipped; the exchange just before the question never.

Measured on fow-cache conversations in bench/QUALITY.md (bench/calibrate.py --conversations).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .canonical import CacheRequest, canonical_json, sha256_hex
from .guard import find_conflict
from .guard.lexicon import CALENDAR
from .guard_scripts import is_foreign
from .stores.base import Entry

Embed = Callable[[list[str]], Awaitable[np.ndarray]]
Turn = tuple[str, str]

PROMPT_ROLES = ("system", "developer")
TURN_ROLES = ("user", "assistant")
# A reworded user turn needs the bar of a long question (policies/default.yaml long_threshold): stricter than a
# short question's, since a turn carries more words that can match by chance.
TURN_THRESHOLD = 0.905
# User turns without an identical twin on the other side, embedded per comparison, and their length: beyond
# this the contexts are too far apart to be worth the embeddings on the lookup path.
MAX_DIFFERING_TURNS = 16
MAX_TURN_CHARS = 2000
# Turns per side aligned at most: the alignment costs their product in Python on the event loop.
MAX_ALIGNED_TURNS = 128

# Words that point back at earlier turns. "is there" is existential, "instead of" self-contained.
_BACK_REFERENCE = re.compile(
    r"\b(?:it|its|it's|that|that's|this|these|those|them|they|their|there|then|one|ones|him|her|he|she|his|"
    r"instead(?! of)|again|also|too|either|other|another|above|earlier|previous|yes|yeah|yep|no|ok|okay|sure|so|"
    r"and|first|second|third|last|option|options)\b", re.IGNORECASE)
_EXISTENTIAL = re.compile(r"\b(?:is|are) there\b", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z0-9']+")
# A capitalised word that does not start a sentence ("PulseFit", "Christmas"): the question names its subject.
_NAME = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][A-Za-z0-9&'-]*")
_NOT_NAMES = frozenset({"I", "I'm", "I've", "I'd", "I'll"})
# "... for cabin bags", "... on your flights": a prepositional phrase that states the topic.
_TOPIC = re.compile(r"\b(?:for|on|at|of|about|with|in|from|by)\s+(?:(?:a|an|the|my|your|our|new)\s+)?"
                    r"(?!you\b|me\b|us\b)([a-z][a-z-]{2,})", re.IGNORECASE)
MIN_SELF_CONTAINED_WORDS = 4


@dataclass(frozen=True)
class Context:
    prompts: tuple[str, ...]  # system/developer messages, in order: must be identical
    turns: tuple[Turn, ...]  # the user/assistant messages, in order


def read_context(context_text: str, context_digest: str) -> Context | None:
    """The earlier messages behind `context_text` ("role: text" lines), or None unless they were plain text
    messages that hash back to `context_digest` exactly (so nothing the text leaves out can differ)."""
    messages: list[dict[str, str]] = []
    if context_text:
        for line in context_text.split("\n"):
            role, sep, text = line.partition(": ")
            if sep and role in PROMPT_ROLES + TURN_ROLES:
                messages.append({"role": role, "content": text})
            elif messages:
                messages[-1]["content"] += "\n" + line
            else:
                return None
    if sha256_hex("context", canonical_json([*messages, {"role": "user", "non_text": []}])) != context_digest:
        return None
    return Context(tuple(f"{m['role']}: {m['content']}" for m in messages if m["role"] in PROMPT_ROLES),
                   tuple((m["role"], m["content"]) for m in messages if m["role"] in TURN_ROLES))


def self_contained(question: str) -> bool:
    """Whether an (English) question names its own subject and points back at nothing said before."""
    if is_foreign(question) or len(_WORD.findall(question)) < MIN_SELF_CONTAINED_WORDS:
        return False
    if _BACK_REFERENCE.search(_EXISTENTIAL.sub("exists", question)):
        return False
    names = [w for w in _NAME.findall(question) if w not in _NOT_NAMES and not _is_calendar(w)]
    return bool(names) or any(not _is_calendar(m.group(1)) for m in _TOPIC.finditer(question))


def _is_calendar(word: str) -> bool:
    """Days and months say when, not what: "Is the museum open on Sundays?" names no museum."""
    return word.lower().rstrip("s") in CALENDAR


def _assistants_in_order(short: Sequence[Turn], long: Sequence[Turn]) -> bool:
    """Cheap first test: the shorter side's assistant turns appear, identical and in order, in the longer side."""
    rest = iter(text for role, text in long if role == "assistant")
    return all(any(text == other for other in rest) for role, text in short if role == "assistant")


def aligned(short: Sequence[Turn], long: Sequence[Turn], agree: Callable[[Turn, Turn], bool]) -> bool:
    """Every turn of `short` matched in order; `long` may skip whole user + assistant exchanges; the turns just
    before the question match each other."""
    if not short or not long or not agree(short[-1], long[-1]):
        return False
    n, m = len(short), len(long)
    reach = [[False] * (m + 1) for _ in range(n + 1)]
    reach[0][0] = True
    for i in range(n + 1):
        for j in range(m + 1):
            if not reach[i][j]:
                continue
            if i < n and j < m and agree(short[i], long[j]):
                reach[i + 1][j + 1] = True
            if j + 1 < m and long[j][0] == "user" and long[j + 1][0] == "assistant":
                reach[i][j + 2] = True
    return reach[n][m]


async def turns_rejection(cached: Sequence[Turn], incoming: Sequence[Turn], embed: Embed,
                          threshold: float = TURN_THRESHOLD) -> str | None:
    """None when the cached turns may stand for the incoming ones (see the module docstring), else the reason;
    `threshold`: the cosine a reworded user turn needs (bench/calibrate.py sweeps it)."""
    short, long = (cached, incoming) if len(cached) <= len(incoming) else (incoming, cached)
    if len(long) > MAX_ALIGNED_TURNS:
        return "context-turns"
    if not _assistants_in_order(short, long):
        return "context-assistant"
    short_users = {text for role, text in short if role == "user"}
    long_users = {text for role, text in long if role == "user"}
    # Every user turn of the shorter side said identically in the other: nothing to compare by meaning.
    differing = sorted(short_users ^ long_users) if short_users - long_users else []
    if len(differing) > MAX_DIFFERING_TURNS or any(len(t) > MAX_TURN_CHARS or is_foreign(t) for t in differing):
        return "context-turns"
    vectors = dict(zip(differing, await embed(differing), strict=True)) if differing else {}

    def agree(x: Turn, y: Turn) -> bool:
        if x[0] != y[0]:
            return False
        if x[1] == y[1]:
            return True
        if x[0] == "assistant" or x[1] not in vectors or y[1] not in vectors:
            return False  # a turn said identically elsewhere is matched there, not to a rewording
        return (float(np.dot(vectors[x[1]], vectors[y[1]])) >= threshold
                and find_conflict(x[1], y[1]) is None)

    return None if aligned(short, long, agree) else "context-turns"


async def context_rejection(request: CacheRequest, candidate: Entry, embed: Embed) -> str | None:
    """Why the candidate's conversation cannot stand for the request's ("context…"), or None when it can."""
    mine = read_context(request.context_text, request.context_digest)
    theirs = read_context(candidate.context_text, candidate.context_digest)
    if mine is None or theirs is None or mine.prompts != theirs.prompts:
        return "context"
    if self_contained(request.question) and self_contained(candidate.question):
        return None
    return await turns_rejection(theirs.turns, mine.turns, embed)

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
- Failing that, the two may be one conversation told twice (another session: both roles reworded, facts in
  another order, small talk in between). Refused when the user said the very same things (then only the
  assistant differs: another offer or option order), when the topics differ (cosine of the mean turn
  embeddings), when a number or name of one side is replaced by another on the other side, when a turn replaced
  between identical turns has no counterpart saying the same thing (a question edited before an identical reply
  needs the user-turn bar), when a detour comes just before the question, and when a turn and its closest
  counterpart differ in a number or name or in what the guard's turn rules see (a swapped entity, a flipped pole,
  a changed scope, a substituted word). A last message that only takes up an offer ("yes please", "go ahead",
  "the second one") also needs the assistant's last turns identical or reworded at the user-turn bar.

The embeddings this asks for sit on the lookup path, so they are bounded: turn vectors are kept across requests
(TURN_VECTORS, an LRU), one comparison embeds at most MAX_NEW_EMBEDDINGS texts it lacks ("context-too-long"),
and at most MAX_TOLD_TWICE_CANDIDATES candidates of one lookup are compared as told twice ("context-too-many").

Measured on fow-cache conversations in bench/QUALITY.md (bench/calibrate.py --conversations, bench/conversation_cost.py,
bench/conversation_budget.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from .canonical import CacheRequest, canonical_json, sha256_hex
from .guard import find_conflict
from .guard.lexicon import CALENDAR
from .guard_scripts import is_foreign
from .memo import LRU
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
# The guard's rules that read as another subject or action between a turn and its counterpart. Its number and
# negation rules are left out: rewordings trip them ("six months" / "6 months in", "nothing" / "no idea"); numbers
# are compared here instead.
TURN_RULES = frozenset({"calendar", "entity", "polarity", "scope", "substitution"})
# Distinct texts compared for one conversation told twice: beyond this the comparison itself (alignment, facts,
# guard on counterparts) costs too much on the lookup path (bench/conversation_cost.py).
MAX_EMBEDDED_TURNS = 96
# Texts not yet in TURN_VECTORS that one comparison may embed (~80 ms at the ~300 short turns/s MiniLM embeds
# batched): beyond it the candidate is refused ("context-too-long") before anything is embedded. 24 is the smallest
# bound at the tuning half's best figures below 96 (bench/conversation_budget.py).
MAX_NEW_EMBEDDINGS = 24
# Candidates of one lookup that may get the told-twice comparison, nearest first; the rest are refused
# ("context-too-many"). The second shares the first's incoming turns through TURN_VECTORS.
MAX_TOLD_TWICE_CANDIDATES = 2
# Turn vectors kept across requests (384 float32 each: ~1.6 kB, so ~6 MB): a client resends its turns with every
# message, and a cached candidate is compared again and again.
TURN_VECTORS_LIMIT = 4096

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
# A short reply that takes up the assistant's last offer or picks one of its options ("yes please", "go ahead",
# "the second one"): it means whatever that offer was.
_ACCEPTS = re.compile(r"^\W*(?:yes|yeah|yep|ok|okay|sure|go ahead|go on|do it|please|that one|option|"
                      r"(?:the )?(?:first|second|third|last|other)(?: one| option)?)\b", re.IGNORECASE)
MAX_ACCEPTING_WORDS = 6
_NUMBER = re.compile(
    r"\d+(?:[.,]\d+)*|\b(?:two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty)\b", re.IGNORECASE)
_NUMBER_WORDS = {w: str(n) for n, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve".split())} | {"twenty": "20", "thirty": "30"}
# A name (capitalised inside a sentence) or a code mixing letters and digits ("SKL4T7", "2FA").
_FACT_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][A-Za-z0-9&'-]+|\b[A-Za-z]*\d[A-Za-z]+[A-Za-z0-9]*\b")
_LOWER_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class ToldTwice:
    """Cut-offs for a conversation told twice (bench/calibrate.py --conversations chose them on the tuning half)."""

    topic: float  # cosine of the two sides' mean turn embeddings
    replaced: float  # cosine a turn replaced between identical turns needs with its counterpart
    counterpart: float  # from this cosine a turn's closest counterpart must state the same numbers and names


TOLD_TWICE = ToldTwice(topic=0.4, replaced=0.3, counterpart=0.9)


class TurnVectors:
    """A bounded LRU of turn embeddings, keyed by the embedder (the `embed` callable) and a digest of the text."""

    def __init__(self, limit: int) -> None:
        self._vectors: LRU[tuple[Hashable, bytes], np.ndarray] = LRU(limit)

    def __len__(self) -> int:
        return len(self._vectors)

    def clear(self) -> None:
        self._vectors.clear()

    @staticmethod
    def key(embed: Embed, text: str) -> tuple[Hashable, bytes]:
        return embed, hashlib.blake2b(text.encode(), digest_size=16).digest()

    def get(self, embed: Embed, text: str) -> np.ndarray | None:
        return self._vectors.get(self.key(embed, text))

    def put(self, embed: Embed, text: str, vector: np.ndarray) -> None:
        self._vectors.put(self.key(embed, text), vector)


TURN_VECTORS = TurnVectors(TURN_VECTORS_LIMIT)


@dataclass
class LookupBudget:
    """What one lookup may still spend on conversations told twice (the matcher makes one per lookup)."""

    told_twice_left: int = MAX_TOLD_TWICE_CANDIDATES


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
                          threshold: float = TURN_THRESHOLD, told_twice: ToldTwice | None = TOLD_TWICE,
                          question: str = "", budget: LookupBudget | None = None,
                          max_new: int | None = None) -> str | None:
    """None when the cached turns may stand for the incoming ones (see the module docstring), else the reason;
    `threshold`: the cosine a reworded user turn needs; `told_twice`: None tries the alignment only
    (bench/calibrate.py sweeps both); `question`: the last message, asked after these turns; `budget`: the
    lookup's told-twice comparisons left (None: no limit); `max_new`: texts not in TURN_VECTORS it may embed
    (None: MAX_NEW_EMBEDDINGS)."""
    short, long = (cached, incoming) if len(cached) <= len(incoming) else (incoming, cached)
    if len(long) > MAX_ALIGNED_TURNS:
        return "context-turns"
    if not short:
        return "context-turns"  # "it" in a fresh chat vs after a topic
    vectors: dict[str, np.ndarray] = {}
    new_left = MAX_NEW_EMBEDDINGS if max_new is None else max_new

    async def embedded(wanted: Sequence[str]) -> bool:
        """Whether every wanted text has its vector, embedding only what TURN_VECTORS lacks, within `max_new`."""
        nonlocal new_left
        missing = []
        for text in sorted(set(wanted) - vectors.keys()):
            vector = TURN_VECTORS.get(embed, text)
            if vector is None:
                missing.append(text)
            else:
                vectors[text] = vector
        if len(missing) > new_left:
            return False
        if missing:
            new_left -= len(missing)
            for text, vector in zip(missing, await embed(missing), strict=True):
                vectors[text] = vector
                TURN_VECTORS.put(embed, text, vector)
        return True

    reason = "context-assistant"
    if _assistants_in_order(short, long):
        short_users = {text for role, text in short if role == "user"}
        long_users = {text for role, text in long if role == "user"}
        # Every user turn of the shorter side said identically in the other: nothing to compare by meaning.
        differing = sorted(short_users ^ long_users) if short_users - long_users else []

        def agree(x: Turn, y: Turn) -> bool:
            if x[0] != y[0]:
                return False
            if x[1] == y[1]:
                return True
            if x[0] == "assistant" or x[1] not in vectors or y[1] not in vectors:
                return False  # a turn said identically elsewhere is matched there, not to a rewording
            return (float(np.dot(vectors[x[1]], vectors[y[1]])) >= threshold
                    and find_conflict(x[1], y[1]) is None)

        if len(differing) <= MAX_DIFFERING_TURNS and _embeddable(differing):
            if not await embedded(differing):
                return "context-too-long"
            if aligned(short, long, agree):
                return None
        reason = "context-turns"
    if told_twice is None or {t for r, t in short if r == "user"} == {t for r, t in long if r == "user"}:
        return reason  # the same words from the user: only the assistant differs (another offer, another order)
    texts = sorted({text for _, text in (*short, *long)})
    if len(texts) > MAX_EMBEDDED_TURNS or not _embeddable(texts):
        return reason
    if budget is not None:
        if budget.told_twice_left <= 0:
            return "context-too-many"
        budget.told_twice_left -= 1
    if not await embedded(texts):
        return "context-too-long"
    if accepts(question) and not _same_offer(short, long, vectors):
        return "context-offer"
    # Facts, alignment and the guard on counterparts: milliseconds for long chats, so off the event loop.
    return await asyncio.to_thread(told_twice_rejection, cached, incoming, vectors, told_twice)


def accepts(question: str) -> bool:
    """Whether the last message only takes up an offer or picks an option of the turn before it."""
    return len(_WORD.findall(question)) <= MAX_ACCEPTING_WORDS and bool(_ACCEPTS.search(question))


def _same_offer(a: Sequence[Turn], b: Sequence[Turn], vectors: dict[str, np.ndarray]) -> bool:
    """The assistant's last turns on both sides identical, or reworded at the user-turn bar with no guard conflict."""
    last_a = next((text for role, text in reversed(a) if role == "assistant"), None)
    last_b = next((text for role, text in reversed(b) if role == "assistant"), None)
    if last_a is None or last_b is None:
        return last_a == last_b
    return last_a == last_b or (float(np.dot(vectors[last_a], vectors[last_b])) >= TURN_THRESHOLD
                                and find_conflict(last_a, last_b) is None)


def _embeddable(texts: Sequence[str]) -> bool:
    """Texts the default model reads whole and understands."""
    return not any(len(t) > MAX_TURN_CHARS or is_foreign(t) for t in texts)


def told_twice_rejection(a: Sequence[Turn], b: Sequence[Turn], vectors: dict[str, np.ndarray],
                         cut: ToldTwice = TOLD_TWICE) -> str | None:
    """None when `a` and `b` read as one conversation told twice (the module docstring), else the reason;
    `vectors` holds every turn's embedding."""
    if float(np.dot(_mean(a, vectors), _mean(b, vectors))) < cut.topic:
        return "context-topic"
    if _replaced(a, b, numbers) or _replaced(a, b, names, _words):
        return "context-facts"
    if not _replacements_agree(a, b, vectors, cut.replaced, TURN_THRESHOLD):
        return "context-replaced"
    for x, y in ((a, b), (b, a)):
        said = {text for _, text in y}
        for role, text in x:
            if text in said:
                continue
            counterpart, similarity = _closest(text, [t for r, t in y if r == role], vectors)
            if counterpart is not None and similarity >= cut.counterpart and (
                    numbers(text) != numbers(counterpart) or names(text) != names(counterpart)
                    or _turn_conflict(text, counterpart)):
                return "context-detail"
    return None


def numbers(text: str) -> frozenset[str]:
    """The numbers a text states, spelled alike: "six" and "6", "£3,000" and "3000", "5.00" and "5"."""
    found = set()
    for match in _NUMBER.finditer(text):
        number = match.group(0).lower().replace(",", "")
        number = _NUMBER_WORDS.get(number, number)
        found.add(number.rstrip("0").rstrip(".") if "." in number else number)
    return frozenset(found)


def names(text: str) -> frozenset[str]:
    """The lower-cased word parts of the names and codes in a text ("Harbour Bank" -> harbour, bank)."""
    return frozenset(part for name in _FACT_NAME.findall(text)
                     if name not in _NOT_NAMES and not _is_calendar(name)
                     for part in _LOWER_WORD.findall(name.lower()))


def _words(text: str) -> frozenset[str]:
    return frozenset(_LOWER_WORD.findall(text.lower()))


def _replaced(a: Sequence[Turn], b: Sequence[Turn], facts: Callable[[str], frozenset[str]],
              present: Callable[[str], frozenset[str]] | None = None) -> bool:
    """Whether each side states a fact the other lacks: one replaced by another (a rewording may add a detail on
    one side, never swap it). `present`: what counts as the other side mentioning it (default: its facts)."""
    seen = present or facts
    fa = frozenset().union(*(facts(t) for _, t in a))
    fb = frozenset().union(*(facts(t) for _, t in b))
    sa = frozenset().union(*(seen(t) for _, t in a))
    sb = frozenset().union(*(seen(t) for _, t in b))
    return bool(fa - sb) and bool(fb - sa)


def _mean(turns: Sequence[Turn], vectors: dict[str, np.ndarray]) -> np.ndarray:
    mean: np.ndarray = np.mean([vectors[text] for _, text in turns], axis=0)
    return mean / (float(np.linalg.norm(mean)) or 1.0)


def _closest(text: str, others: Sequence[str], vectors: dict[str, np.ndarray]) -> tuple[str | None, float]:
    if not others:
        return None, 0.0
    similarities = [float(np.dot(vectors[text], vectors[o])) for o in others]
    best = int(np.argmax(similarities))
    return others[best], similarities[best]


def _turn_conflict(x: str, y: str) -> bool:
    return find_conflict(x, y) in TURN_RULES


def _anchors(a: Sequence[Turn], b: Sequence[Turn]) -> list[tuple[int, int]]:
    """The turns said identically on both sides, in order (a longest common subsequence)."""
    n, m = len(a), len(b)
    longest = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            longest[i][j] = (longest[i + 1][j + 1] + 1 if a[i] == b[j]
                             else max(longest[i + 1][j], longest[i][j + 1]))
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if a[i] == b[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif longest[i + 1][j] >= longest[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def _replacements_agree(a: Sequence[Turn], b: Sequence[Turn], vectors: dict[str, np.ndarray],
                        threshold: float, edited: float) -> bool:
    """Between identical turns, turns on both sides replace each other: each of the fewer needs a counterpart of
    its role there that says the same thing. Turns on one side only are small talk or a detour, but never just
    before the question."""
    anchors = _anchors(a, b)
    if not anchors:
        return True  # told afresh: nothing was replaced
    bounds = [(-1, -1), *anchors, (len(a), len(b))]
    for (i0, j0), (i1, j1) in zip(bounds, bounds[1:], strict=False):
        gap_a, gap_b = a[i0 + 1:i1], b[j0 + 1:j1]
        if bool(gap_a) != bool(gap_b) and i1 == len(a):
            return False  # a detour just before the question: it may be what the question is about
        if not gap_a or not gap_b:
            continue
        if len(gap_a) == len(gap_b) == 1 and gap_a[0][0] == gap_b[0][0] == "user" and i1 < len(a) and (
                "?" in gap_a[0][1] + gap_b[0][1]):
            # A question edited before an identical reply: that reply answered both only if they ask the same.
            x, y = gap_a[0][1], gap_b[0][1]
            if float(np.dot(vectors[x], vectors[y])) < edited or find_conflict(x, y) is not None:
                return False
            continue
        fewer, more = (gap_a, gap_b) if len(gap_a) <= len(gap_b) else (gap_b, gap_a)
        for role, text in fewer:
            counterpart, similarity = _closest(text, [t for r, t in more if r == role], vectors)
            if counterpart is None or similarity < threshold or _turn_conflict(text, counterpart):
                return False
    return True


async def context_rejection(request: CacheRequest, candidate: Entry, embed: Embed,
                            budget: LookupBudget) -> str | None:
    """Why the candidate's conversation cannot stand for the request's ("context…"), or None when it can.
    `budget`: the lookup's, shared by its candidates."""
    mine = read_context(request.context_text, request.context_digest)
    theirs = read_context(candidate.context_text, candidate.context_digest)
    if mine is None or theirs is None or mine.prompts != theirs.prompts:
        return "context"
    if self_contained(request.question) and self_contained(candidate.question):
        return None
    return await turns_rejection(theirs.turns, mine.turns, embed, question=request.question, budget=budget)

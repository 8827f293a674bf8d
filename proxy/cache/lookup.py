"""The lookup: the one place that decides whether a stored entry answers a request.

exact key (in memory, then the store; no embedding) -> embed the question (micro-batched with concurrent lookups)
and search the partition's index on the embedding thread (which reads the exact key itself where the store can
read there, and embeds only when that finds no answer) -> records (in memory, then the store) -> the first
candidate that passes every check (context, freshness, guard) is the hit.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..canonical import CacheRequest
from ..conversation import LookupBudget, context_rejection
from ..embedding_router import EmbedderRouter, Lane
from ..embeddings import DEFAULT_MODEL_NAME
from ..guard import find_conflict, grey_conflict, restates
from ..memo import LRU
from ..policies import Policy
from ..stores.base import Entry, ExactReader, Store
from ..terms import usable
from .hot import HotRecords

log = logging.getLogger("deja.cache")

MatchType = Literal["exact", "semantic"]
# Neighbours examined per lookup: the nearest one can fail a check (context, freshness) while the next passes.
CANDIDATES = 8
# Below this many characters (both questions) the guard runs inline: a thread hop would cost more.
GUARD_INLINE_CHARS = 2000
# Grey-band candidates (below the threshold) that may be guard-checked: the nearest few only, so a miss does not pay
# the guard on every neighbour from second_opinion_from up.
GREY_CANDIDATES = 2
# Stored questions' second-model vectors kept in memory: a near-tie then embeds the question alone.
SECOND_VECTORS = 4096


@dataclass(frozen=True)
class Hit:
    record: Entry
    match: MatchType
    similarity: float | None = None


@dataclass(frozen=True)
class Rejection:
    """Why the nearest candidate did not answer: a guard rule, "context", "stale" or "threshold"."""

    entry_id: int
    similarity: float
    reason: str


@dataclass(frozen=True)
class Lookup:
    hit: Hit | None
    # The question's embedding, when the lookup made one: a miss reuses it when its answer is stored.
    vector: np.ndarray | None = None
    # On a semantic miss: the nearest candidate and what kept it out (X-Cache-Debug, deja eval --explain).
    nearest: Rejection | None = None
    # Why no semantic lookup ran although the policy wanted one: "unreadable" = no embedder covers the text.
    skipped: str | None = None


def rejection(request: CacheRequest, candidate: Entry, now: float, max_age: int | None,
              max_stale: int = 0, similarity: float | None = None, context_agreed: bool = False) -> str | None:
    """The check a similar-enough candidate fails, or None when it may answer: the same conversation ("context"),
    still fresh ("stale"; `max_stale` seconds past its TTL still count), and no difference the guard sees as
    answer-changing (the rule's name)."""
    if candidate.context_digest != request.context_digest and not context_agreed:
        return "context"
    if not usable(candidate, now, max_age, max_stale):
        return "stale"
    return find_conflict(candidate.question, request.question, similarity)


class Matcher:
    """Finds the entry that answers a request, reading through the hot records to the store."""

    def __init__(self, store: Store, hot: HotRecords, router: EmbedderRouter, guard_max_chars: int) -> None:
        self.store = store
        self.hot = hot
        self.router = router
        self.guard_max_chars = guard_max_chars
        # Candidates above the threshold turned away, by reason (guard rule, "context", "stale"): /metrics.
        self.rejections: Counter[str] = Counter()
        # Candidates that belonged to another partition than the request's (never served): should stay 0.
        self.foreign_candidates = 0
        self._second_vectors: LRU[str, np.ndarray] = LRU(SECOND_VECTORS)

    async def lookup(self, request: CacheRequest, policy: Policy, now: float, max_age: int | None,
                     max_stale: int) -> Lookup:
        lane, skipped = self._lane(request, policy)
        partition = request.partition
        name = lane.embedder.name if lane is not None else ""

        def search(v: np.ndarray) -> tuple[np.ndarray, list[tuple[int, float]] | None]:
            return v, self.store.search_now(partition, v, CANDIDATES, name)

        record, searched = self.hot.by_key(request.exact_key), None
        reader = self.store.exact_reader() if lane is not None else None
        if record is None and lane is not None and reader is not None:
            # One trip to the embedding thread: it reads the exact key there, and embeds only when that is no hit.
            epoch = self.hot.epoch
            answer = await lane.batcher.embed(request.question, search,
                                              lambda: self._servable(request, reader, now, max_age, max_stale))
            if isinstance(answer, Entry):
                self.hot.put(answer, epoch)
                record = answer
            else:
                searched = answer
        elif record is None:
            record = await self.record(request.exact_key)
        exact = self.exact(request, record, now, max_age, max_stale)
        if exact is not None:
            return Lookup(exact)
        if lane is None:
            return Lookup(None, skipped=skipped)
        vector, found = searched or await lane.batcher.embed(request.question, search)
        candidates = found if found is not None else await self.store.search(partition, vector, CANDIDATES, name)
        threshold = lane.threshold(policy, request.question)
        nearest = Rejection(candidates[0][0], min(candidates[0][1], 1.0), "threshold") if candidates else None
        second = self.router.second_opinion if lane.primary else None
        short = len(request.question) <= policy.long_after
        grey_from = min(threshold, policy.second_opinion_from if short else policy.long_second_opinion_from) \
            if second is not None else threshold
        grey = [(i, s) for i, s in candidates if grey_from <= s < threshold][:GREY_CANDIDATES]
        candidates = [(i, s) for i, s in candidates if s >= threshold]
        # The guard reads the similarity only as the default model's cosine (it was calibrated on those).
        calibrated = name.split("@")[0] == DEFAULT_MODEL_NAME
        records = await self.records(i for i, _ in candidates + grey)
        passed: list[tuple[Entry, float]] = []
        budget = LookupBudget()
        for entry_id, similarity in candidates + grey:
            if passed and similarity < passed[0][1] - policy.second_opinion_margin:
                break  # a candidate passed and nothing close enough to rival it is left
            candidate = records.get(entry_id)
            if candidate is None or not self.own(request, candidate):
                continue
            sim = similarity if calibrated else None
            reason = await self._rejection_off_loop(request, candidate, now, max_age, max_stale, sim)
            if reason == "context" and policy.conversations == "meaning":
                reason = (await context_rejection(request, candidate, lane.batcher.embed_many, budget)
                          or await self._rejection_off_loop(request, candidate, now, max_age, max_stale, sim, True))
            if reason is None:
                if candidate.exact_key == request.exact_key:
                    # Stored while this lookup was embedding: it is the identical request, so say so.
                    return Lookup(Hit(candidate, "exact"), vector)
                passed.append((candidate, similarity))
                continue
            self.rejections[reason] += 1
            if nearest is not None and nearest.entry_id == entry_id:
                nearest = Rejection(entry_id, nearest.similarity, reason)
        chosen, refused = await self._choose(request.question, passed, threshold, short, policy, second)
        if chosen is not None:
            return Lookup(Hit(chosen[0], "semantic", min(chosen[1], 1.0)), vector)
        if passed:
            self.rejections[refused] += len(passed)
            if nearest is not None and nearest.entry_id == passed[0][0].id:
                nearest = Rejection(nearest.entry_id, nearest.similarity, refused)
        return Lookup(None, vector, nearest)

    def _lane(self, request: CacheRequest, policy: Policy) -> tuple[Lane | None, str | None]:
        """The lane that embeds the question when its exact key misses, or None and why not ("unreadable": no
        model can read it; None: the policy, the text or an empty index rules a semantic lookup out)."""
        if policy.mode != "semantic" or not request.semantic_ok or len(request.question) > self.guard_max_chars:
            return None, None
        lane = self.router.lane_for(request.question)
        if lane is None:
            return None, "unreadable"  # never judge what no model can read
        if not self.store.searchable(request.partition, lane.embedder.name):
            return None, None  # nothing to compare with: the question is embedded at write-back instead
        return lane, None

    def _servable(self, request: CacheRequest, reader: ExactReader, now: float, max_age: int | None,
                  max_stale: int) -> Entry | None:
        """The stored entry under the request's exact key when it answers it (on the embedding thread)."""
        record = reader(request.exact_key)
        if record is not None and usable(record, now, max_age, max_stale) and record.partition == request.partition:
            return record
        return None

    def exact(self, request: CacheRequest, record: Entry | None, now: float, max_age: int | None,
              max_stale: int) -> Hit | None:
        if record is not None and usable(record, now, max_age, max_stale) and self.own(request, record):
            return Hit(record, "exact")
        return None

    def fresh_in_memory(self, request: CacheRequest, now: float, max_age: int | None) -> Hit | None:
        """The exact hit `lookup` would find, when its record is hot and within its TTL (a stale one is
        `lookup`'s to serve: it may be refreshed in the background)."""
        return self.exact(request, self.hot.by_key(request.exact_key), now, max_age, 0)

    async def _choose(self, question: str, passed: list[tuple[Entry, float]], threshold: float, short: bool,
                      policy: Policy, second: Lane | None) -> tuple[tuple[Entry, float] | None, str]:
        """The candidate that answers, among those every check passed (best first). MiniLM's cosine decides alone
        when one candidate clears the threshold with no rival within second_opinion_margin: ordinary hits pay
        nothing more. Otherwise the second model (multilingual-e5) embeds the question and the contenders: a
        candidate below the threshold (the grey band) answers only if e5's cosine reaches the policy's second
        opinion bar (the long one unless `short`), and near-tied contenders are ranked by e5, which tells them
        apart better; when e5 cannot either (second_opinion_tie) and neither restates the question's words alone
        (guard.restates), nothing answers. Returns the choice, or None and
        why ("second opinion": e5 did not agree; "tie")."""
        if not passed:
            return None, "second opinion"
        best = passed[0][1]
        contenders = [(e, s) for e, s in passed if s >= best - policy.second_opinion_margin]
        if best >= threshold and len(contenders) == 1:
            return contenders[0], ""
        if second is None:
            return (contenders[0] if best >= threshold else None), "second opinion"
        vectors = await self._second_vectors_of(second, question, [e.question for e, _ in contenders])
        agreement = vectors[1:] @ vectors[0]
        # Below the threshold e5 must agree, and the pair must not differ in what e5 scores high too
        # (guard.grey_conflict: swapped words in one frame; for short questions, another kind of answer wanted:
        # a long one's band starts higher and needs a surer e5, and "deadline" / "by when" rewordings are common).
        agree = policy.second_opinion_threshold if short else policy.long_second_opinion_threshold
        scored = [(float(a), e, s) for a, (e, s) in zip(agreement, contenders, strict=True)
                  if s >= threshold or (a >= agree and not grey_conflict(e.question, question, short))]
        if not scored:
            return None, "second opinion"
        scored.sort(key=lambda x: -x[0])
        rival = next(((a, e) for a, e, _ in scored[1:] if e.question != scored[0][1].question), None)
        if rival is not None and scored[0][0] - rival[0] < policy.second_opinion_tie \
                and not restates(question, scored[0][1].question, rival[1].question):
            return None, "tie"
        _, entry, similarity = scored[0]
        return (entry, similarity), ""

    async def _second_vectors_of(self, second: Lane, question: str, stored: list[str]) -> np.ndarray:
        """The second model's vectors of `question` and the `stored` questions, the stored ones from memory when
        a previous near-tie embedded them (e5 costs ~30 ms a text on the thread MiniLM's batches share)."""
        texts = list(dict.fromkeys(stored))
        known = {t: v for t in texts if (v := self._second_vectors.get(t)) is not None}
        missing = [t for t in texts if t not in known]
        fresh = await second.batcher.embed_many([question] + missing)
        for text, vector in zip(missing, fresh[1:], strict=True):
            self._second_vectors.put(text, vector)
            known[text] = vector
        return np.vstack([fresh[0]] + [known[t] for t in stored])

    async def record(self, exact_key: str) -> Entry | None:
        """The entry stored under `exact_key`, from memory when it is there."""
        record = self.hot.by_key(exact_key)
        if record is None:
            epoch = self.hot.epoch
            record = await self.store.get_exact(exact_key)
            if record is not None:
                self.hot.put(record, epoch)
        return record

    async def records(self, ids: Iterable[int]) -> dict[int, Entry]:
        found: dict[int, Entry] = {}
        missing = []
        for entry_id in ids:
            record = self.hot.by_id(entry_id)
            if record is None:
                missing.append(entry_id)
            else:
                found[entry_id] = record
        if missing:
            epoch = self.hot.epoch
            for entry_id, record in (await self.store.get_many(missing)).items():
                found[entry_id] = record
                self.hot.put(record, epoch)
        return found

    def own(self, request: CacheRequest, candidate: Entry) -> bool:
        """Defence in depth: a store or index fault must never serve another partition's answer."""
        if candidate.partition == request.partition:
            return True
        self.foreign_candidates += 1
        log.error("entry %d of another partition came up for a lookup; not served", candidate.id)
        return False

    async def _rejection_off_loop(self, request: CacheRequest, candidate: Entry, now: float, max_age: int | None,
                                  max_stale: int, similarity: float | None = None,
                                  context_agreed: bool = False) -> str | None:
        """The guard's cost grows with the texts: long pairs are vetted on a thread, so the loop keeps serving."""
        if len(candidate.question) + len(request.question) <= GUARD_INLINE_CHARS:
            return rejection(request, candidate, now, max_age, max_stale, similarity, context_agreed)
        return await asyncio.to_thread(rejection, request, candidate, now, max_age, max_stale, similarity,
                                       context_agreed)

"""`deja eval`: labelled pairs through exactly the code the proxy uses to decide a hit.

pairs mode:  each pair gets its own namespace; `a` is stored as an answered request, `b` is looked up.
corpus mode: every `a` is stored in one namespace (answer = its row), every `b` is looked up; a hit is right
             when it returns its own row's answer (or one with the same `a` text), wrong otherwise.
The lookup runs at the lowest threshold of the sweep and records the similarity of what it served; with one
stored entry per namespace, "served at threshold t" is then exactly "served and similarity >= t".
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import tarfile
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from .cache.semantic import SemanticCache
from .canonical import Owner, build_chat_request, tenant_of, text_of, validate_body
from .embeddings import Embedder
from .freshness import time_sensitivity
from .policies import Policy
from .render import text_completion
from .stores.sqlite import SqliteStore

EvalMode = Literal["pairs", "corpus"]
Split = Literal["all", "tune", "holdout"]
EVAL_TENANT = tenant_of("Bearer deja-eval")


@dataclass(frozen=True)
class Fields:
    a: str = "a"
    b: str = "b"
    label: str = "same_answer"
    category: str = "category"
    id: str = "id"


@dataclass(frozen=True)
class Pair:
    id: str
    a: Any
    b: Any
    same: bool
    category: str


@dataclass
class Outcome:
    pair: Pair
    similarity: float | None  # of the served entry; None: nothing served even at the lowest threshold
    right: bool = True  # corpus mode: the served entry was this pair's own
    primary: bool = True  # served through the main model (policy threshold), else the multilingual one
    # When nothing was served: the nearest candidate's similarity and what turned it away (guard rule, threshold…)
    nearest: float | None = None
    reason: str | None = None
    served_question: str | None = None  # corpus mode: the stored question whose answer was served
    # The lookup at the policy's own thresholds (its second opinion included): None = that lookup served nothing,
    # else whether what it served was right. The sweep reads `similarity` (MiniLM's cosine alone) instead.
    policy_right: bool | None = None
    policy_question: str | None = None
    policy_reason: str | None = None  # what kept the policy's lookup from serving its nearest candidate


def in_split(pair_id: str, split: Split) -> bool:
    """A stable half: the first byte of sha256(id) even = tuning half, odd = held-out half."""
    if split == "all":
        return True
    even = hashlib.sha256(pair_id.encode()).digest()[0] % 2 == 0
    return even if split == "tune" else not even


def read_text(path: Path) -> str:
    """A file's text; `.gz` files may be plain gzip or, like GPTCache's QQP files, a gzipped tar of one JSON file."""
    if path.suffix != ".gz":
        return path.read_text()
    if tarfile.is_tarfile(path):
        with tarfile.open(path, "r:gz") as archive:
            member = next((m for m in archive.getmembers() if m.isfile()), None)
            extracted = archive.extractfile(member) if member else None
            if extracted is None:
                raise ValueError(f"{path}: the archive holds no file")
            return extracted.read().decode()
    return gzip.decompress(path.read_bytes()).decode()


def read_pairs(path: Path, fields: Fields, split: Split = "all") -> list[Pair]:
    """JSONL rows, or a JSON list; rows without a label count as should-hit (e.g. GPTCache's mock_data.json)."""
    text = read_text(path)
    rows = json.loads(text) if text.lstrip().startswith("[") else [json.loads(x) for x in text.splitlines() if x]
    pairs = []
    for n, row in enumerate(rows):
        if fields.a not in row or fields.b not in row:
            raise ValueError(f"{path}: row {n + 1} has no {fields.a!r} or {fields.b!r} field")
        pair_id = str(row.get(fields.id, n))
        if in_split(pair_id, split):
            pairs.append(Pair(pair_id, row[fields.a], row[fields.b], bool(row.get(fields.label, True)),
                              str(row.get(fields.category) or row.get("subtype") or "all")))
    return pairs


def messages_of(side: Any) -> list[dict[str, Any]]:
    return side if isinstance(side, list) else [{"role": "user", "content": str(side)}]


def chat_request(side: Any, namespace: str, model: str) -> Any:
    body = validate_body({"model": model, "messages": messages_of(side)})
    return build_chat_request(body, Owner(EVAL_TENANT, namespace))


def answer_for(tag: str) -> dict[str, Any]:
    return text_completion(tag, "eval", answer_id=f"eval-{tag}", created=0)


async def run_eval(pairs: list[Pair], embedder: Embedder, policy: Policy, *, mode: EvalMode = "pairs",
                   floor: float = 0.5, model: str = "eval-model", progress: bool = True,
                   extra_embedders: Sequence[Embedder] = ()) -> list[Outcome]:
    """Store and look up every pair through SemanticCache with the policy's checks at threshold `floor`."""
    probe = dataclasses.replace(policy, mode="semantic", threshold=floor, long_threshold=floor,
                                multilingual_threshold=floor, ttl=0, max_entries=0)
    with tempfile.TemporaryDirectory(prefix="deja-eval-") as tmp:
        store = SqliteStore(Path(tmp), embedder.name, embedder.dim, [(e.name, e.dim) for e in extra_embedders])
        await store.open()
        actual = dataclasses.replace(policy, mode="semantic", ttl=0, max_entries=0)
        cache = SemanticCache(store, embedder, queue_size=len(pairs) + 1, save_interval=3600,
                              extra_embedders=extra_embedders)
        await cache.start()
        try:
            stored_as: dict[str, str] = {}
            for n, pair in enumerate(tqdm(pairs, desc="storing", disable=not progress, unit="pair")):
                namespace = "corpus" if mode == "corpus" else f"pair-{n}"
                key = json.dumps(pair.a, sort_keys=True)
                if mode == "corpus" and key in stored_as:
                    continue  # duplicated `a` texts share one entry, as the proxy would keep one
                stored_as[key] = str(n)
                cache.submit(chat_request(pair.a, namespace, model), probe, answer_for(str(n)))
                if n % 256 == 0:
                    await cache.drain()
            await cache.drain()
            outcomes = []
            for n, pair in enumerate(tqdm(pairs, desc="looking up", disable=not progress, unit="pair")):
                namespace = "corpus" if mode == "corpus" else f"pair-{n}"
                request = chat_request(pair.b, namespace, model)
                # Pairs mode: each pair's own namespace (two pairs may share an `a` text); corpus: the one entry.
                own = str(n) if mode == "pairs" else stored_as[json.dumps(pair.a, sort_keys=True)]
                actual_lookup = await cache.lookup(request, actual, None)
                actual_hit = actual_lookup.hit
                policy_reason = actual_lookup.nearest.reason if actual_lookup.nearest else None
                policy_right = None if actual_hit is None else _answer(actual_hit.record) == own
                policy_question = None if actual_hit is None else actual_hit.record.question
                lookup = await cache.lookup(request, probe, None)
                hit = lookup.hit
                if hit is None:
                    near = lookup.nearest
                    outcomes.append(Outcome(pair, None, nearest=near.similarity if near else None,
                                            reason=near.reason if near else None, policy_right=policy_right,
                                            policy_question=policy_question, policy_reason=policy_reason))
                    continue
                similarity = 1.0 if hit.similarity is None else hit.similarity
                outcomes.append(Outcome(pair, similarity, right=_answer(hit.record) == own,
                                        served_question=hit.record.question,
                                        primary=hit.record.embedder in (None, embedder.name),
                                        policy_right=policy_right, policy_question=policy_question,
                                        policy_reason=policy_reason))
            return outcomes
        finally:
            await cache.close()
            await store.close()


def _answer(record: Any) -> str:
    return str(record.response["choices"][0]["message"]["content"])


def volatile_reason(side: Any) -> str | None:
    """Why the asked question counts as time-sensitive (the proxy would store it for volatile_ttl), or None."""
    return time_sensitivity(text_of(messages_of(side)[-1].get("content")))


def served_at(outcome: Outcome, threshold: float | None = None) -> bool:
    """Served at `threshold` (MiniLM's cosine alone, the sweep), or with None as the policy itself decided."""
    if threshold is None:
        return outcome.policy_right is not None
    return outcome.similarity is not None and outcome.similarity >= threshold


@dataclass(frozen=True)
class Score:
    should_hit: int
    served: int  # should-hit pairs served (in corpus mode: served with their own answer)
    traps: int
    traps_served: int  # traps served; in corpus mode: wrong answers served
    wrong_served: int = 0

    @property
    def served_rate(self) -> float:
        return self.served / self.should_hit if self.should_hit else 0.0

    @property
    def trap_rate(self) -> float:
        return self.traps_served / self.traps if self.traps else 0.0

    @property
    def wrong_rate(self) -> float:
        return self.wrong_served / self.should_hit if self.should_hit else 0.0


def right_at(outcome: Outcome, threshold: float | None) -> bool:
    return bool(outcome.policy_right) if threshold is None else outcome.right


def score(outcomes: list[Outcome], policy: Policy, threshold: float | None = None) -> Score:
    should = [o for o in outcomes if o.pair.same]
    traps = [o for o in outcomes if not o.pair.same]
    return Score(
        should_hit=len(should),
        served=sum(served_at(o, threshold) and right_at(o, threshold) for o in should),
        traps=len(traps),
        traps_served=sum(served_at(o, threshold) for o in traps),
        wrong_served=sum(served_at(o, threshold) and not right_at(o, threshold) for o in should),
    )


def by_category(outcomes: list[Outcome], policy: Policy) -> dict[str, Score]:
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[o.pair.category].append(o)
    return {name: score(group, policy) for name, group in sorted(groups.items())}


def sweep(outcomes: list[Outcome], policy: Policy, thresholds: list[float]) -> list[tuple[float, Score]]:
    return [(t, score(outcomes, policy, t)) for t in thresholds]


def files_title(files: Sequence[str]) -> str:
    """The evaluated files as a heading names them: by file name, with its folder where two share a name
    (conv-parts/billing.jsonl and conv-long/billing.jsonl)."""
    paths = [Path(f) for f in files]
    shared = {name for name, count in Counter(p.name for p in paths).items() if count > 1}
    return ", ".join(f"{p.parent.name}/{p.name}" if p.name in shared else p.name for p in paths)


def thresholds_between(low: float, high: float, step: float) -> list[float]:
    count = int(round((high - low) / step)) + 1
    return [round(low + i * step, 4) for i in range(count)]


def report_lines(name: str, outcomes: list[Outcome], policy: Policy, thresholds: list[float],
                 mode: EvalMode) -> Iterator[str]:
    total = score(outcomes, policy)
    yield f"## {name}: {len(outcomes)} pairs, threshold {policy.threshold} (long {policy.long_threshold} "\
          f"after {policy.long_after} chars; multilingual {policy.multilingual_threshold}; second opinion from " \
          f"{policy.second_opinion_from} at e5 >= {policy.second_opinion_threshold}, " \
          f"margin {policy.second_opinion_margin}, tie {policy.second_opinion_tie}; " \
          f"long from {policy.long_second_opinion_from} at e5 >= {policy.long_second_opinion_threshold})"
    yield ""
    if mode == "corpus":
        yield "| should-hit | served own answer | served another's answer | missed |"
        yield "|---|---|---|---|"
        missed = total.should_hit - total.served - total.wrong_served
        yield f"| {total.should_hit} | {total.served_rate:.1%} | {total.wrong_rate:.1%} | " \
              f"{missed / max(total.should_hit, 1):.1%} |"
    else:
        yield "| category | pairs | should-hit served | traps served |"
        yield "|---|---|---|---|"
        for category, s in by_category(outcomes, policy).items():
            served = f"{s.served}/{s.should_hit} ({s.served_rate:.1%})" if s.should_hit else "–"
            traps = f"{s.traps_served}/{s.traps} ({s.trap_rate:.1%})" if s.traps else "–"
            yield f"| {category} | {s.should_hit + s.traps} | {served} | {traps} |"
        yield f"| **all** | {len(outcomes)} | {total.served}/{total.should_hit} ({total.served_rate:.1%}) | " \
              f"{total.traps_served}/{total.traps} ({total.trap_rate:.1%}) |"
    yield ""
    volatile = Counter(r for r in (volatile_reason(o.pair.b) for o in outcomes) if r)
    if volatile:
        yield f"Time-sensitive questions asked (stored for volatile_ttl {policy.volatile_ttl} s): " \
              f"{sum(volatile.values())}/{len(outcomes)} — " + ", ".join(f"{k} {v}" for k, v in volatile.most_common())
        yield ""
    yield "| threshold | should-hit served | " + ("wrong answers |" if mode == "corpus" else "traps served |")
    yield "|---|---|---|"
    for t, s in sweep(outcomes, policy, thresholds):
        yield f"| {t:.2f} | {s.served_rate:.1%} | {(s.wrong_rate if mode == 'corpus' else s.trap_rate):.1%} |"
    yield ""


def _clip(side: Any, chars: int = 90) -> str:
    text = side if isinstance(side, str) else " / ".join(str(m.get("content", "")) for m in messages_of(side))
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= chars else text[: chars - 1] + "…"


def wrong_decisions(outcomes: list[Outcome], policy: Policy) -> list[tuple[str, Outcome]]:
    """Every served trap or wrong answer, then every missed should-hit pair, most similar first in each group."""
    served_wrong = [o for o in outcomes if served_at(o) and (not o.pair.same or not o.policy_right)]
    missed = [o for o in outcomes if o.pair.same and not served_at(o)]
    served_wrong.sort(key=lambda o: -(o.similarity or 0.0))
    missed.sort(key=lambda o: -(o.similarity if o.similarity is not None else o.nearest or 0.0))
    return [("served trap" if not o.pair.same else "wrong answer", o) for o in served_wrong] + \
        [("missed", o) for o in missed]


def explain_lines(outcomes: list[Outcome], policy: Policy) -> Iterator[str]:
    """`deja eval --explain`: each wrong decision with its similarity and the check that decided it."""
    decisions = wrong_decisions(outcomes, policy)
    yield f"### Wrong decisions: {len(decisions)}"
    yield ""
    yield "| decision | id | category | similarity | why | stored (a) | asked (b) |"
    yield "|---|---|---|---|---|---|---|"
    for kind, o in decisions:
        bar = policy.threshold_for(text_of(messages_of(o.pair.b)[-1].get("content")))
        similarity: float | None
        if kind == "missed" and o.similarity is not None:
            similarity = o.similarity
            if o.policy_reason == "tie":
                why = "tie: another stored question as close to e5 too"
            else:
                why = f"below threshold {bar}" if o.similarity < bar else "second opinion ranked another first"
        elif kind == "missed":
            similarity = o.nearest
            why = f"guard: {o.reason}" if o.reason not in (None, "threshold") else "below every threshold"
        else:
            similarity, why = o.similarity, f"no rule fired (threshold {bar})"
            if similarity is not None and similarity < bar:
                why = f"no rule fired (below {bar}; the second opinion agreed)"
        stored = o.policy_question if kind == "wrong answer" and o.policy_question else o.pair.a
        shown = "–" if similarity is None else f"{similarity:.4f}"
        yield f"| {kind} | {o.pair.id} | {o.pair.category} | {shown} | {why} | {_clip(stored)} | {_clip(o.pair.b)} |"
    yield ""


def report_json(outcomes: list[Outcome], policy: Policy, thresholds: list[float]) -> dict[str, Any]:
    def as_dict(s: Score) -> dict[str, Any]:
        return {**dataclasses.asdict(s), "served_rate": s.served_rate, "trap_rate": s.trap_rate,
                "wrong_rate": s.wrong_rate}
    return {
        "policy": {"threshold": policy.threshold, "long_threshold": policy.long_threshold,
                   "long_after": policy.long_after, "multilingual_threshold": policy.multilingual_threshold},
        "total": as_dict(score(outcomes, policy)),
        "categories": {k: as_dict(v) for k, v in by_category(outcomes, policy).items()},
        "sweep": [{"threshold": t, **as_dict(s)} for t, s in sweep(outcomes, policy, thresholds)],
        "pairs": [{"id": o.pair.id, "category": o.pair.category, "same_answer": o.pair.same,
                   "similarity": o.similarity, "right": o.right, "served": served_at(o),
                   "nearest": o.nearest, "reason": o.reason, "volatile": volatile_reason(o.pair.b)}
                  for o in outcomes],
    }


def plot(outcomes: list[Outcome], policy: Policy, thresholds: list[float], path: Path, title: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise SystemExit("deja eval --plot needs matplotlib: pip install 'deja[eval]'") from exc
    points = sweep(outcomes, policy, thresholds)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.plot([s.trap_rate * 100 for _, s in points], [s.served_rate * 100 for _, s in points], marker="o", ms=3)
    for t, s in points[:: max(1, len(points) // 8)]:
        ax.annotate(f"{t:.2f}", (s.trap_rate * 100, s.served_rate * 100), fontsize=7)
    ax.set_xlabel("traps served (%)")
    ax.set_ylabel("should-hit pairs served (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)

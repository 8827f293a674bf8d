"""Calibrate the semantic-cache cut-offs and measure the guard (proxy/guard/); prints markdown to stdout.

    python bench/calibrate.py [--eval-dir ../shared/eval] [--models /tmp/deja-guard-models] [--cache /tmp/x.npz]

Data (read, never copied): fow-cache pairs + conversations (hard negatives) and GPTCache mock_data (paraphrases).
Split: an item is in the tuning half when the first byte of sha256(id) is even, held out otherwise; mock_data rows
use their index as id. Thresholds are chosen on the tuning half only; both halves are reported.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from proxy import conversation, guard  # noqa: E402
from proxy.policies import builtin_policy  # noqa: E402

SHOULD_HIT = ("paraphrase", "near_repeat")
TRAPS = ("negation", "entity_swap", "number_date", "scope")
CONV_HIT = ("same_context_reworded", "irrelevant_history", "same_context_extra_chatter")
CONV_TRAP = ("context_swap", "detail_swap", "intent_flip")
SWEEP = [round(x, 3) for x in np.arange(0.60, 0.981, 0.02)]
TRAP_BUDGET = 0.01  # fow pairs: at most 1% of traps served
CONV_TRAP_BUDGET = 0.02


# -- context designs compared for conversations (the proxy ships proxy/conversation.py) ------------

# The shipped defaults (policies/default.yaml), reported on both halves.
DEFAULT = builtin_policy()
_CUT = conversation.TOLD_TWICE
SHIPPED = ("shipped (`conversations: meaning`): self-contained question alone, else aligned turns (assistant "
           f"identical, user cosine ≥ {conversation.TURN_THRESHOLD} + guard, detours skipped), else told twice "
           f"(topic ≥ {_CUT.topic}, no replaced number or name, replaced turns ≥ {_CUT.replaced} + turn rules, "
           f"counterparts ≥ {_CUT.counterpart} same facts + turn rules, an accepted offer reworded at the "
           "user-turn bar)")
ALIGNED_ONLY = "aligned turns only (the design before told twice; user cosine swept)"
# The told-twice cut-offs searched on the tuning half: every combination.
TOPICS = (0.3, 0.4, 0.5, 0.6, 0.7)
REPLACED = (0.2, 0.3, 0.5, 0.6)
COUNTERPARTS = (0.8, 0.85, 0.9)
SHIPPED_SWEPT = "as shipped, user-turn cosine swept"
TOLD_TWICE_SWEPT = "as shipped, told-twice cut-offs searched (topic, replaced, counterpart)"
BY_MEANING = "as shipped, but assistant turns by meaning too"
# The embedder reads ~256 tokens from the start, so the proxy embeds only the context's tail: recent turns decide
# what "it" means. The guard still reads the whole context.
CONTEXT_EMBED_CHARS = 1000



def _content_of(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def context_text(messages: list[dict]) -> str:
    """The earlier turns (everything before the final user message, system prompt included) as one text, one
    "role: content" line per message; store it whole and embed `text[-CONTEXT_EMBED_CHARS:]`."""
    lines = [f"{m.get('role', 'user')}: {' '.join(_content_of(m).split())}" for m in messages]
    return "\n".join(lines)


def context_conflict(cached_context: str, incoming_context: str, similarity: float, threshold: float) -> str | None:
    """Why the cached context cannot stand for the incoming one, or None. `similarity` is the cosine of the two
    contexts' embeddings (ignored when both are empty)."""
    if cached_context == incoming_context:
        return None
    if not cached_context or not incoming_context or threshold >= 1.0:
        return "context"
    if similarity < threshold:
        return "context"
    rule = guard.find_conflict(cached_context, incoming_context)  # a swapped amount or name anywhere in the history
    return f"context-{rule}" if rule else None


def tuning(item_id: str) -> bool:
    return hashlib.sha256(item_id.encode()).digest()[0] % 2 == 0


class Embeddings:
    """Embeds texts once; optionally keeps vectors in an .npz so reruns skip the model."""

    def __init__(self, models: Path, cache: Path | None) -> None:
        self.cache, self.vectors, self.model = cache, {}, None
        self.models = models
        if cache and cache.is_file():
            data = np.load(cache, allow_pickle=True)
            self.vectors = dict(zip(data["keys"].tolist(), data["vecs"], strict=True))

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        if missing:
            if self.model is None:
                from proxy.embeddings import FastEmbedder
                from proxy.settings import EmbeddingSettings

                self.model = FastEmbedder(EmbeddingSettings(), self.models)
            for i in range(0, len(missing), 64):
                chunk = missing[i : i + 64]
                self.vectors.update(zip(chunk, self.model.embed(chunk), strict=True))
            if self.cache:
                keys = list(self.vectors)
                np.savez(self.cache, keys=np.array(keys, dtype=object), vecs=np.stack([self.vectors[k] for k in keys]))
        return np.stack([self.vectors[t] for t in texts]) if texts else np.zeros((0, 384), np.float32)


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def rate(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


# ---------------------------------------------------------------- fow pairs


def served_pair(cos: float, a: str, b: str, t: float, long_t: float, long_after: int) -> bool:
    cut = long_t if len(b) > long_after else t
    return cos >= cut and guard.find_conflict(a, b) is None


def fow_report(rows: list[dict], cos: np.ndarray, out: list[str]) -> dict:
    conflicts = [guard.find_conflict(r["a"], r["b"]) for r in rows]
    tune = [tuning(r["id"]) for r in rows]

    def stats(t: float, half: bool) -> dict:
        cat = defaultdict(list)
        for r, c, k, h in zip(rows, cos, conflicts, tune, strict=True):
            if h == half:
                cat[r["category"]].append(bool(c >= t and k is None))
        hit = [x for c in SHOULD_HIT for x in cat[c]]
        trap = [x for c in TRAPS for x in cat[c]]
        return {"hit": rate(hit), "trap": rate(trap), **{c: rate(v) for c, v in cat.items()}}

    out.append("## fow-cache pairs: threshold sweep on the tuning half (guard on)\n")
    out.append("| cosine ≥ | should-hit served | traps served | traps served, no guard |")
    out.append("|---|---|---|---|")
    best = None
    for t in SWEEP:
        s = stats(t, True)
        raw = rate([bool(c >= t) for r, c, h in zip(rows, cos, tune, strict=True) if h and not r["same_answer"]])
        out.append(f"| {t:.2f} | {pct(s['hit'])} | {pct(s['trap'])} | {pct(raw)} |")
        if best is None and s["trap"] <= TRAP_BUDGET:
            best = t
    best = best if best is not None else SWEEP[-1]
    out.append(f"\nChosen threshold (lowest with tuning traps ≤ {pct(TRAP_BUDGET)}): **{best:.2f}**\n")
    out.append("| category | tuning served | held-out served |")
    out.append("|---|---|---|")
    st, sh = stats(best, True), stats(best, False)
    for c in (*SHOULD_HIT, "hit", *TRAPS, "trap"):
        name = {"hit": "**all should-hit**", "trap": "**all traps**"}.get(c, c)
        out.append(f"| {name} | {pct(st[c])} | {pct(sh[c])} |")
    # what the guard rejects, per category (all rows, any cosine)
    out.append("\nGuard rejections per category (both halves, before any cosine cut):\n")
    out.append("| category | rejected | by rule |")
    out.append("|---|---|---|")
    for c in (*SHOULD_HIT, *TRAPS):
        ks = [k for r, k in zip(rows, conflicts, strict=True) if r["category"] == c]
        by = defaultdict(int)
        for k in ks:
            if k:
                by[k] += 1
        rules = ", ".join(f"{k} {n}" for k, n in sorted(by.items(), key=lambda x: -x[1]))
        out.append(f"| {c} | {pct(rate([k is not None for k in ks]))} | {rules} |")
    return {"threshold": best, "tuning": st, "held": sh}


# ---------------------------------------------------------------- mock_data corpus


def mock_report(pairs: list[dict], emb: Embeddings, threshold: float, out: list[str]) -> dict:
    origins = list(dict.fromkeys(p["origin"] for p in pairs))  # one canonical id per distinct text
    index = {o: i for i, o in enumerate(origins)}
    ov, sv = emb(origins), emb([p["similar"] for p in pairs])
    sims = sv @ ov.T
    best = sims.argmax(1)
    best_cos = sims[np.arange(len(pairs)), best]
    tune = [tuning(str(i)) for i in range(len(pairs))]
    conflicts = [guard.find_conflict(origins[b], p["similar"]) for b, p in zip(best, pairs, strict=True)]

    def stats(t: float, lt: float, la: int, half: bool, use_guard: bool = True) -> tuple[float, float]:
        ok = wrong = n = 0
        for i, p in enumerate(pairs):
            if tune[i] != half:
                continue
            n += 1
            cut = lt if len(p["similar"]) > la else t
            if best_cos[i] >= cut and (conflicts[i] is None or not use_guard):
                if best[i] == index[p["origin"]]:
                    ok += 1
                else:
                    wrong += 1
        return ok / n, wrong / n

    lengths = np.array([len(p["similar"]) for p in pairs])
    out.append("\n## mock_data corpus mode (all origins stored, each `similar` asked, best neighbour wins)\n")
    out.append(f"`similar` length: median {int(np.median(lengths))} chars, p10 {int(np.percentile(lengths, 10))}.")
    out.append(f"Guard rejects the best neighbour for {pct(rate([k is not None for k in conflicts]))} of queries ")
    by = defaultdict(int)
    for k in conflicts:
        if k:
            by[k] += 1
    out.append("(" + ", ".join(f"{k} {n}" for k, n in sorted(by.items(), key=lambda x: -x[1])) + ").\n")
    out.append(
        "| long cosine ≥ (len > long_after) | tuning own answer | tuning other's answer | no guard: own / other |"
    )
    out.append("|---|---|---|---|")
    for lt in SWEEP:
        ok, wrong = stats(threshold, lt, 0, True)
        ok2, wrong2 = stats(threshold, lt, 0, True, use_guard=False)
        out.append(f"| {lt:.2f} | {pct(ok)} | {pct(wrong)} | {pct(ok2)} / {pct(wrong2)} |")
    out.append(
        f"\nShipped default: threshold {DEFAULT.threshold}, long_threshold {DEFAULT.long_threshold} after "
        f"{DEFAULT.long_after} chars.\n"
    )
    out.append("| half | own answer | another's answer | own, no guard | another's, no guard |")
    out.append("|---|---|---|---|---|")
    for half in (True, False):
        ok, wrong = stats(DEFAULT.threshold, DEFAULT.long_threshold, DEFAULT.long_after, half)
        ok2, wrong2 = stats(DEFAULT.threshold, DEFAULT.long_threshold, DEFAULT.long_after, half, use_guard=False)
        out.append(f"| {'tuning' if half else 'held-out'} | {pct(ok)} | {pct(wrong)} | {pct(ok2)} | {pct(wrong2)} |")
    return {"stats": stats, "conflicts": conflicts}


# ---------------------------------------------------------------- conversations


def conv_texts(messages: list[dict], mode: str) -> str:
    earlier = messages[:-1]
    if mode == "roles":
        return context_text(earlier)
    if mode == "users+last_assistant":
        last_a = max((i for i, m in enumerate(earlier) if m["role"] == "assistant"), default=-1)
        kept = [m for i, m in enumerate(earlier) if m["role"] != "assistant" or i == last_a]
        return context_text(kept)
    if mode == "combined":
        return context_text(messages)
    raise ValueError(mode)


def aligned_turns(convs: list[dict], emb: Embeddings, qok: list[bool]) -> list[tuple[float, list[bool]]]:
    """Issue 12's design: the same roles turn by turn, each earlier turn identical or (cosine >= t and no guard
    conflict), the last question judged as a question."""
    texts = sorted({m["content"] for c in convs for side in "ab" for m in c[side]})
    vectors = dict(zip(texts, emb(texts), strict=True))

    def turns_agree(c: dict, t: float) -> bool:
        a, b = c["a"][:-1], c["b"][:-1]
        if len(a) != len(b) or any(x["role"] != y["role"] for x, y in zip(a, b, strict=True)):
            return False
        return all(x["content"] == y["content"] or (
            float(vectors[x["content"]] @ vectors[y["content"]]) >= t
            and guard.find_conflict(x["content"], y["content"]) is None) for x, y in zip(a, b, strict=True))

    return [(t, [q and turns_agree(c, t) for c, q in zip(convs, qok, strict=True)]) for t in SWEEP]


def as_async(emb: Embeddings) -> Callable[[list[str]], Awaitable[np.ndarray]]:
    """`emb` as the async embed callable proxy/conversation.py takes."""

    async def embed(texts: list[str]) -> np.ndarray:
        return emb(texts)
    return embed


def turns(side: list[dict]) -> tuple[tuple[str, str], ...]:
    """A conversation's earlier turns, as proxy/conversation.py reads them."""
    return tuple((m["role"], m["content"]) for m in side[:-1])


def last_questions_alone(convs: list[dict]) -> list[bool]:
    """Per pair: both last questions self-contained (judged by themselves)."""
    return [conversation.self_contained(c["a"][-1]["content"]) and conversation.self_contained(c["b"][-1]["content"])
            for c in convs]


def shipped_turns(convs: list[dict], emb: Embeddings, qok: list[bool]) -> dict[str, list[tuple[float, list[bool]]]]:
    """The shipped design (proxy/conversation.py, policy `conversations: meaning`) run as the proxy runs it, its
    user-turn cosine swept; beside it the self-contained rule alone, and assistant turns compared by meaning too."""

    embed, alone = as_async(emb), last_questions_alone(convs)
    texts = sorted({m["content"] for c in convs for side in "ab" for m in c[side]})
    vectors = dict(zip(texts, emb(texts), strict=True))

    def by_meaning(c: dict, t: float) -> bool:
        """Both roles reworded at cosine >= t, no guard conflict: what "assistant turns must be identical" rules out."""

        def agree(x: tuple[str, str], y: tuple[str, str]) -> bool:
            return x[0] == y[0] and (x[1] == y[1] or (float(vectors[x[1]] @ vectors[y[1]]) >= t
                                                      and guard.find_conflict(x[1], y[1]) is None))

        a, b = turns(c["a"]), turns(c["b"])
        return conversation.aligned(*sorted((a, b), key=len), agree)

    def shipped(c: dict, t: float, cut: conversation.ToldTwice | None = conversation.TOLD_TWICE) -> bool:
        return asyncio.run(conversation.turns_rejection(turns(c["a"]), turns(c["b"]), embed, t, cut,
                                                        c["b"][-1]["content"])) is None

    same = [c["a"][:-1] == c["b"][:-1] for c in convs]
    designs = {"self-contained last question alone, else exact context": [
        (0.0, [q and (s or a) for q, s, a in zip(qok, same, alone, strict=True)])]}
    def flags(rule: Callable[[dict, float], bool], t: float) -> list[bool]:
        conversation.TURN_VECTORS.clear()  # each pass starts as a fresh proxy: the embedding bound holds alike
        return [q and (s or a or rule(c, t)) for c, q, s, a in zip(convs, qok, same, alone, strict=True)]

    designs[SHIPPED] = [(conversation.TURN_THRESHOLD, flags(shipped, conversation.TURN_THRESHOLD))]
    designs[SHIPPED_SWEPT] = [(t, flags(shipped, t)) for t in SWEEP]
    designs[ALIGNED_ONLY] = [(t, flags(lambda c, t: shipped(c, t, None), t)) for t in SWEEP]
    designs[BY_MEANING] = [(t, flags(by_meaning, t)) for t in SWEEP]
    return designs


def told_twice_grid(convs: list[dict], emb: Embeddings,
                    qok: list[bool]) -> list[tuple[conversation.ToldTwice, list[bool]]]:
    """Every combination of the told-twice cut-offs, the rest as shipped."""

    embed, alone = as_async(emb), last_questions_alone(convs)
    rows = []
    for cut in itertools.starmap(conversation.ToldTwice, itertools.product(TOPICS, REPLACED, COUNTERPARTS)):
        conversation.TURN_VECTORS.clear()
        rows.append((cut, [q and (a or c["a"][:-1] == c["b"][:-1] or asyncio.run(conversation.turns_rejection(
            turns(c["a"]), turns(c["b"]), embed, conversation.TURN_THRESHOLD, cut, c["b"][-1]["content"])) is None)
            for c, q, a in zip(convs, qok, alone, strict=True)]))
    return rows


def conv_report(convs: list[dict], emb: Embeddings, threshold: float | None, out: list[str]) -> dict:
    """`threshold` None: each last question's bar is the shipped default policy's for its length."""
    qa, qb = emb([c["a"][-1]["content"] for c in convs]), emb([c["b"][-1]["content"] for c in convs])
    qcos = (qa * qb).sum(1)
    qok = [
        bool(cs >= (DEFAULT.threshold_for(c["b"][-1]["content"]) if threshold is None else threshold))
        and guard.find_conflict(c["a"][-1]["content"], c["b"][-1]["content"]) is None
        for c, cs in zip(convs, qcos, strict=True)
    ]
    tune = [tuning(c["id"]) for c in convs]
    designs: dict[str, list[tuple[float, list[bool]]]] = {}

    def per_half(flags: list[bool], half: bool) -> dict:
        cat = defaultdict(list)
        for c, f, h in zip(convs, flags, tune, strict=True):
            if h == half:
                cat[c["subtype"]].append(f)
        return {
            "hit": rate([x for s in CONV_HIT for x in cat[s]]),
            "trap": rate([x for s in CONV_TRAP for x in cat[s]]),
            **{s: rate(v) for s, v in cat.items()},
        }

    designs["last message only"] = [(0.0, qok)]
    exact = [q and c["a"][:-1] == c["b"][:-1] for c, q in zip(convs, qok, strict=True)]
    designs["exact context"] = [(1.0, exact)]
    tail = CONTEXT_EMBED_CHARS
    for mode in ("roles", "users+last_assistant"):
        ca = [conv_texts(c["a"], mode) for c in convs]
        cb = [conv_texts(c["b"], mode) for c in convs]
        for chars in (tail, 4 * tail):
            ccos = (emb([x[-chars:] for x in ca]) * emb([x[-chars:] for x in cb])).sum(1)
            base = f"context `{mode}`, last {chars} chars embedded"
            designs[base + ", cosine only"] = [
                (t, [q and (x == y or bool(s >= t)) for q, x, y, s in zip(qok, ca, cb, ccos, strict=True)])
                for t in SWEEP
            ]
            designs[base + ", cosine + guard on whole context"] = [
                (
                    t,
                    [
                        q and context_conflict(x, y, float(s), t) is None
                        for q, x, y, s in zip(qok, ca, cb, ccos, strict=True)
                    ],
                )
                for t in SWEEP
            ]
    designs["aligned turns: each earlier turn identical or cosine + guard"] = aligned_turns(convs, emb, qok)
    designs.update(shipped_turns(convs, emb, qok))
    ca = [conv_texts(c["a"], "combined")[-tail:] for c in convs]
    cb = [conv_texts(c["b"], "combined")[-tail:] for c in convs]
    ccos = (emb(ca) * emb(cb)).sum(1)
    designs["combined context+question embedding"] = [
        (t, [q and bool(s >= t) for q, s in zip(qok, ccos, strict=True)]) for t in SWEEP
    ]

    bar = "the default policy's" if threshold is None else f"{threshold:.2f}"
    out.append(f"\n## Conversations: design comparison (question cut-off {bar}, guard on question)\n")
    out.append("Each design at its best context threshold on the tuning half (most should-hit with traps ≤ 2%).\n")
    out.append("| design | ctx threshold | tuning hit / trap | held-out hit / trap |")
    out.append("|---|---|---|---|")
    chosen = {}
    for name, rows in designs.items():
        ok_rows = [(t, f) for t, f in rows if per_half(f, True)["trap"] <= CONV_TRAP_BUDGET]
        if ok_rows:
            t, f = max(ok_rows, key=lambda x: (per_half(x[1], True)["hit"], -x[0]))
        else:
            t, f = min(rows, key=lambda x: per_half(x[1], True)["trap"])
        st, sh = per_half(f, True), per_half(f, False)
        chosen[name] = (t, f)
        out.append(
            f"| {name} | {t:.2f} | {pct(st['hit'])} / {pct(st['trap'])} | {pct(sh['hit'])} / {pct(sh['trap'])} |"
        )
    aligned = "aligned turns: each earlier turn identical or cosine + guard"
    out.append(f"\nTurn cosine swept, tuning half: `{aligned}` (last session's attempt), `{SHIPPED_SWEPT}` and "
               f"`{BY_MEANING}`:\n")
    out.append("| turn cosine ≥ | aligned: hit / trap | shipped: hit / trap | assistant by meaning: hit / trap |")
    out.append("|---|---|---|---|")
    for (t, f), (_, g), (_, h) in zip(designs[aligned], designs[SHIPPED_SWEPT], designs[BY_MEANING], strict=True):
        cells = [per_half(x, True) for x in (f, g, h)]
        out.append(f"| {t:.2f} | " + " | ".join(f"{pct(c['hit'])} / {pct(c['trap'])}" for c in cells) + " |")
    grid = told_twice_grid(convs, emb, qok)
    allowed = [(cut, f) for cut, f in grid if per_half(f, True)["trap"] <= CONV_TRAP_BUDGET]
    # Most should-hit on the tuning half; among equals the strictest cut-offs.
    best, _ = max(allowed, key=lambda x: (per_half(x[1], True)["hit"], x[0].topic + x[0].replaced + x[0].counterpart))
    out.append(f"\n`{TOLD_TWICE_SWEPT}`: {len(grid)} combinations of topic {TOPICS}, replaced {REPLACED} and "
               f"counterpart {COUNTERPARTS}. Tuning-best with traps ≤ 2% (ties: the strictest): topic {best.topic}, "
               f"replaced {best.replaced}, counterpart {best.counterpart}; shipped: topic {_CUT.topic}, replaced "
               f"{_CUT.replaced}, counterpart {_CUT.counterpart}. The ten best on the tuning half:\n")
    out.append("| topic | replaced | counterpart | tuning hit / trap | held-out hit / trap |")
    out.append("|---|---|---|---|---|")
    ranked = sorted(grid, key=lambda x: (per_half(x[1], True)["trap"] > CONV_TRAP_BUDGET, -per_half(x[1], True)["hit"],
                                         -(x[0].topic + x[0].replaced + x[0].counterpart)))
    for cut, f in ranked[:10]:
        st, sh = per_half(f, True), per_half(f, False)
        out.append(f"| {cut.topic} | {cut.replaced} | {cut.counterpart} | {pct(st['hit'])} / {pct(st['trap'])} | "
                   f"{pct(sh['hit'])} / {pct(sh['trap'])} |")
    t, f = designs[SHIPPED][0]
    out.append(f"\nShipped design: {SHIPPED}. Per subtype:\n")
    out.append("| subtype | tuning served | held-out served |")
    out.append("|---|---|---|")
    st, sh = per_half(f, True), per_half(f, False)
    for s in (*CONV_HIT, "hit", *CONV_TRAP, "trap"):
        out.append(f"| {s} | {pct(st[s])} | {pct(sh[s])} |")
    return {"designs": chosen, "per_half": per_half}


# ---------------------------------------------------------------- latency


def latency_report(texts: list[tuple[str, str]], out: list[str]) -> None:
    cold, warm = [], []
    for a, b in texts:
        guard.features.cache_clear()
        t0 = time.perf_counter()
        guard.find_conflict(a, b)
        cold.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        guard.find_conflict(a, b)
        warm.append(time.perf_counter() - t0)
    cold_ms, warm_ms = np.array(cold) * 1e3, np.array(warm) * 1e3
    out.append("\n## Guard latency per candidate pair\n")
    out.append("| | p50 | p99 |")
    out.append("|---|---|---|")
    out.append(
        f"| cold (features of both texts computed) | {np.median(cold_ms):.3f} ms | "
        f"{np.percentile(cold_ms, 99):.3f} ms |"
    )
    out.append(f"| warm (lru_cache hit) | {np.median(warm_ms):.4f} ms | {np.percentile(warm_ms, 99):.4f} ms |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eval-dir", type=Path, default=REPO.parent / "shared" / "eval")
    ap.add_argument("--models", type=Path, default=Path("/tmp/deja-guard-models"))
    ap.add_argument("--cache", type=Path, default=None, help="optional .npz to keep embeddings between runs")
    ap.add_argument("--conversations", action="store_true", help="only the conversation design comparison, at "
                    "the default policy's thresholds (bench/quality.sh)")
    args = ap.parse_args()
    emb = Embeddings(args.models, args.cache)
    fow = args.eval_dir / "fow-cache"
    rows = [json.loads(line) for line in (fow / "pairs.jsonl").open()]
    convs = [json.loads(line) for p in sorted(fow.glob("conv-*/*.jsonl")) for line in p.open()]
    mock = json.loads((args.eval_dir / "mock_data.json").read_text())
    if args.conversations:
        out: list[str] = []
        conv_report(convs, emb, None, out)
        print("\n".join(out))
        return

    out = ["# Deja guard calibration", "", "Model: all-MiniLM-L6-v2 int8 (fastembed), cosine on unit vectors.", ""]
    cos = (emb([r["a"] for r in rows]) * emb([r["b"] for r in rows])).sum(1)
    res = fow_report(rows, cos, out)
    mock_report(mock, emb, res["threshold"], out)
    conv_report(convs, emb, res["threshold"], out)
    latency_report([(r["a"], r["b"]) for r in rows] + [(m["origin"], m["similar"]) for m in mock], out)
    print("\n".join(out))


if __name__ == "__main__":
    main()

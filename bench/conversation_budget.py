"""How the bound on new turn embeddings per told-twice comparison (proxy/conversation.py MAX_NEW_EMBEDDINGS)
moves the conversation figures: the fow-cache conversation pairs through `deja eval`'s run (default policy,
default model), both halves, for each bound. The turn-vector cache starts empty for each run and fills as the
run goes (pairs built on one conversation share its turns), as a proxy's does.

    python -m bench.conversation_budget [EVAL_DIR]   (default /work/shared/eval; prints a markdown table)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from proxy import conversation
from proxy import evaluate as ev
from proxy.embeddings import load_embedder
from proxy.multilingual import load_multilingual
from proxy.policies import builtin_policy
from proxy.settings import EmbeddingSettings

from .conversation_cost import MODELS

BOUNDS = (8, 12, 16, 24, 32, 48, 96)
FILES = [f"{kind}/{part}.jsonl" for kind in ("conv-parts", "conv-long") for part in ("billing", "retail", "services")]


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/eval") / "fow-cache"
    settings = EmbeddingSettings(cache_dir=str(MODELS))
    embedder = load_embedder(settings, MODELS)
    extra = load_multilingual(settings)
    policy = builtin_policy()
    fields = ev.Fields("a", "b", "same_answer", "category", "id")
    halves: dict[str, list[ev.Pair]] = {"tune": [], "holdout": []}
    for split, pairs in halves.items():
        for file in FILES:
            pairs += ev.read_pairs(root / file, fields, split)  # type: ignore[arg-type]
    floor = min(policy.threshold, policy.long_threshold, policy.multilingual_threshold)
    print("| new embeddings per comparison at most | tuning should-hit / traps | held-out should-hit / traps |")
    print("|---|---|---|")
    for bound in BOUNDS:
        conversation.MAX_NEW_EMBEDDINGS = bound
        cells = []
        for pairs in halves.values():
            conversation.TURN_VECTORS.clear()
            outcomes = asyncio.run(ev.run_eval(pairs, embedder, policy, floor=floor, progress=False,
                                               model="gpt-4o-mini", extra_embedders=extra))
            s = ev.score(outcomes, policy)
            cells.append(f"{s.served}/{s.should_hit} ({s.served_rate:.1%}) / {s.traps_served}/{s.traps} "
                         f"({s.trap_rate:.1%})")
        print(f"| {bound} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()

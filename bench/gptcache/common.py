"""What the in-process and the server benchmark share: GPTCache's initialisation and the workload."""

import os
import statistics
from pathlib import Path

from embedding import DejaEmbedding
from gptcache import Config
from gptcache.adapter.api import init_similar_cache
from gptcache.manager import manager_factory
from gptcache.processor.pre import get_prompt
from gptcache.similarity_evaluation import SearchDistanceEvaluation

ACTIONS = ["configure", "reset", "export", "delete", "enable", "disable", "back up", "rename", "share", "audit"]
OBJECTS = [
    "the billing report",
    "two-factor login",
    "the webhook endpoint",
    "the nightly sync job",
    "user roles",
    "the audit log",
    "email alerts",
    "the API rate limit",
    "the dark theme",
    "SSO with Okta",
    "the data retention policy",
    "custom dashboards",
    "the mobile app pairing",
    "invoice numbering",
    "the Slack integration",
    "CSV imports",
    "the staging environment",
    "password rules",
    "the team calendar",
    "storage quotas",
]
PRODUCTS = ["Acme Desk", "Nimbus CRM"]


def init_gptcache(data_dir: Path, threshold: float) -> None:
    """The same setup as `gptcache_server`'s default (init_similar_cache: sqlite+faiss, SearchDistanceEvaluation,
    get_prompt), but with Deja's embedding instead of the downloading `Onnx()` one. Initialises GPTCache's global
    `cache`, the one `gptcache.adapter.api.get/put` and so the server's /get and /put use."""
    embedding = DejaEmbedding(data_dir)
    init_similar_cache(
        pre_func=get_prompt,  # /put and /get pass `prompt=`; last_content would expect chat messages
        embedding=embedding,
        data_manager=manager_factory("sqlite,faiss", data_dir=str(data_dir), vector_params={"dimension": 384}),
        evaluation=SearchDistanceEvaluation(),
        # No tiktoken: the token counter downloads its encoding at first use.
        config=Config(similarity_threshold=threshold, enable_token_counter=False),
    )


def workload(n: int) -> list[tuple[str, str, str]]:
    """n (question, paraphrase, answer) triples: distinct how-to questions and a reworded ask for each."""
    combos = [(a, o, p) for p in PRODUCTS for a in ACTIONS for o in OBJECTS]
    if n > len(combos):
        raise SystemExit(f"at most {len(combos)} questions")
    return [
        (f"How do I {a} {o} in {p}?", f"Please tell me how to {a} {o} in {p}.", f"answer #{i}")
        for i, (a, o, p) in enumerate(combos[:n])
    ]


def summarize(latencies_ms: list[float], hits: int, correct: int) -> dict:
    cuts = statistics.quantiles(latencies_ms, n=100, method="inclusive")
    return {
        "n": len(latencies_ms),
        "hits": hits,
        "correct_hits": correct,  # a hit returning the answer of the question it paraphrases
        "p50_ms": round(cuts[49], 3),
        "p99_ms": round(cuts[98], 3),
        "mean_ms": round(statistics.fmean(latencies_ms), 3),
        # 2 shared cores: a busy machine moves these numbers a lot, so each result says how busy it was.
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }

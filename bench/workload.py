"""The semantic-hit workload shared with bench/gptcache/common.py (same templates, so both caches answer the same
paraphrases): distinct how-to questions and a reworded ask for each."""

from __future__ import annotations

import json

ACTIONS = ["configure", "reset", "export", "delete", "enable", "disable", "back up", "rename", "share", "audit"]
OBJECTS = ["the billing report", "two-factor login", "the webhook endpoint", "the nightly sync job", "user roles",
           "the audit log", "email alerts", "the API rate limit", "the dark theme", "SSO with Okta",
           "the data retention policy", "custom dashboards", "the mobile app pairing", "invoice numbering",
           "the Slack integration", "CSV imports", "the staging environment", "password rules", "the team calendar",
           "storage quotas"]
PRODUCTS = ["Acme Desk", "Nimbus CRM"]
MODEL = "gpt-4o-mini"
API_KEY = "sk-bench"
# The bench policy: GPTCache's benchmark threshold, so both caches serve the same paraphrases.
THRESHOLD = 0.8
# Misses go to a model whose policy only matches near-identical text: they embed and search, and never hit.
MISS_MODEL = "bench-miss"


def workload(n: int) -> list[tuple[str, str, str]]:
    combos = [(a, o, p) for p in PRODUCTS for a in ACTIONS for o in OBJECTS]
    if n > len(combos):
        raise SystemExit(f"at most {len(combos)} questions")
    return [(f"How do I {a} {o} in {p}?", f"Please tell me how to {a} {o} in {p}.", f"answer #{i}")
            for i, (a, o, p) in enumerate(combos[:n])]


def chat_body(text: str, model: str = MODEL) -> str:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}]})


def write_policies(directory) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "default.yaml").write_text(f"match: '*'\nthreshold: {THRESHOLD}\nlong_threshold: {THRESHOLD}\n"
                                            "max_entries: 2000000\nttl: 0\n")
    (directory / "miss.yaml").write_text(f"match: '{MISS_MODEL}*'\nthreshold: 0.999\nlong_threshold: 0.999\n"
                                         "max_entries: 2000000\nttl: 0\n")

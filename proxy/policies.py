"""Per-model cache policies: `policies/*.yaml`, each matching models by a glob; the most specific match wins."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml

from .errors import ConfigError
from .memo import Memo
from .settings import build_dataclass

Mode = Literal["off", "exact", "semantic"]
# exact: only an identical context (system prompt and earlier turns) hits; meaning: proxy/conversation.py.
Conversations = Literal["exact", "meaning"]
# The usage a hit reports: the answer's real size, or what it cost upstream (render.py).
HitUsage = Literal["original", "zero"]
BUILTIN_POLICY = "default_policy.yaml"
# Distinct model names whose policy is remembered (client-chosen names: bounded; past it, matched each time).
MEMO_MODELS = 1024


@dataclass(frozen=True)
class Policy:
    match: str = "*"
    mode: Mode = "semantic"
    # Cosine similarity a stored question needs to answer a new one (the guard then vets it); calibrated on the
    # tuning half of the labelled data in bench/QUALITY.md.
    threshold: float = 0.65
    # Long questions share more words by construction, so they need a higher bar (as ModelCache does).
    long_threshold: float = 0.88
    # A final user message longer than this many characters uses long_threshold.
    long_after: int = 60
    # The bar for questions the multilingual model embeds (non-English text): e5 packs its cosines into a narrow
    # high range, so it needs its own threshold; tuned on bench/data/multilingual.jsonl's tuning half.
    multilingual_threshold: float = 0.93
    # MiniLM misreads some rewordings (0.50-0.65). A short question's candidate scoring from second_opinion_from up
    # to `threshold` answers when the multilingual model's cosine reaches second_opinion_threshold (1: off).
    second_opinion_from: float = 0.50
    second_opinion_threshold: float = 0.90
    # Candidates that pass every check and score within this of the best are ranked by the multilingual model
    # (near-duplicate stored questions: MiniLM's order between them is noise). 0: MiniLM's order alone.
    second_opinion_margin: float = 0.02
    # Two different stored questions that stay as close as this in the multilingual model's cosine too are a miss:
    # the cache cannot tell which one was asked (0: the closer one answers). Identical stored questions (variety
    # slots, other contexts) never tie.
    second_opinion_tie: float = 0.01
    # The same for a long question (past long_after), from long_second_opinion_from up to long_threshold: e5 must
    # agree more (long texts share words by construction, and e5 rates look-alikes higher than MiniLM does).
    long_second_opinion_from: float = 0.70
    long_second_opinion_threshold: float = 0.95
    # Seconds an entry may answer; 0 keeps it until evicted.
    ttl: int = 7 * 24 * 3600
    # Serve entries across API keys (tenants). Only for data that is the same for everyone.
    share_across_keys: bool = False
    # Entries kept per partition (tenant, model, parameters, namespace); the least recently used go first.
    max_entries: int = 100_000
    # Token counts a hit reports in `usage`: the stored answer's ("original": what the answer is, which agents use
    # to track their context) or zeros ("zero": what this call cost upstream).
    hit_usage: HitUsage = "original"
    # Seconds an answer to a time-sensitive question ("weather today", "latest version") may answer; 0: never
    # cached. Detected by proxy/freshness.py.
    volatile_ttl: int = 900
    # Seconds after its TTL an entry is still served (X-Cache-Status: STALE) while one background request
    # refreshes it; 0: off.
    stale_while_revalidate: int = 0
    # Store answers cut off by max_tokens (finish_reason "length").
    cache_truncated: bool = False
    # Answers kept per question for requests with temperature > 0 or n > 1 (0: one, as for any request); a hit
    # picks one at random. Until the bucket is full, variety_fill of the requests go upstream to fill it.
    variety: int = 0
    variety_fill: float = 0.5
    # How earlier turns are compared when the question matches by meaning: "exact" (identical contexts only) or
    # "meaning" (self-contained questions judged alone; reworded user turns, identical assistant turns, detours
    # skipped: proxy/conversation.py). System prompts always compare exactly.
    conversations: Conversations = "meaning"
    name: str = "default"

    def threshold_for(self, text: str) -> float:
        return self.long_threshold if len(text) > self.long_after else self.threshold

    @property
    def specificity(self) -> int:
        """More literal characters = more specific; `gpt-4o-mini*` beats `gpt-4o*` beats `*`."""
        return sum(ch not in "*?[]" for ch in self.match)


def parse_policy(data: object, where: str) -> Policy:
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of policy settings")
    if "name" in data:
        raise ConfigError(f"{where}: unknown key 'name' (a policy is named after its file)")
    policy: Policy = build_dataclass(Policy, {**data, "name": Path(where).stem}, where)
    for key in ("threshold", "long_threshold", "multilingual_threshold"):
        value = getattr(policy, key)
        if not 0.0 < value <= 1.0:
            raise ConfigError(f"{where}: {key}: expected a cosine similarity in (0, 1], got {value}")
    for key in ("long_after", "ttl", "max_entries", "volatile_ttl", "stale_while_revalidate", "variety",
                "second_opinion_margin", "second_opinion_tie"):
        if getattr(policy, key) < 0:
            raise ConfigError(f"{where}: {key}: expected a number >= 0, got {getattr(policy, key)}")
    if not 0.0 <= policy.variety_fill <= 1.0:
        raise ConfigError(f"{where}: variety_fill: expected a share in [0, 1], got {policy.variety_fill}")
    return policy


def _read_yaml(path: Path, text: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc


def builtin_policy() -> Policy:
    text = resources.files("proxy").joinpath(BUILTIN_POLICY).read_text()
    return parse_policy(_read_yaml(Path("default.yaml"), text), "default.yaml")


class PolicySet:
    def __init__(self, policies: list[Policy]) -> None:
        # Sorted once: the first glob that matches is the most specific one.
        self.policies = sorted(policies, key=lambda p: (-p.specificity, p.name))
        if not any(p.match == "*" for p in self.policies):
            self.policies.append(builtin_policy())
        self._memo: Memo[str, Policy] = Memo(self._match, MEMO_MODELS)

    def policy_for(self, model: str) -> Policy:
        return self._memo(model)

    def _match(self, model: str) -> Policy:
        for policy in self.policies:
            if fnmatch.fnmatchcase(model, policy.match):
                return policy
        raise AssertionError("the catch-all policy always matches")


def load_policies(directory: str | Path | None) -> PolicySet:
    """Policies from `directory`, else ./policies if present, else the built-in default."""
    if directory is None:
        directory = Path("policies") if Path("policies").is_dir() else None
    if directory is None:
        return PolicySet([builtin_policy()])
    path = Path(directory)
    if not path.is_dir():
        raise ConfigError(f"{path}: policies directory not found")
    policies = []
    for file in sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")):
        policies.append(parse_policy(_read_yaml(file, file.read_text()), str(file)))
    seen: dict[str, str] = {}
    for p in policies:
        if p.match in seen:
            raise ConfigError(f"{p.name}: match {p.match!r} is already used by {seen[p.match]}")
        seen[p.match] = p.name
    return PolicySet(policies)

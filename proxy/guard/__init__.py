"""The "never serve the wrong answer" guard: cheap lexical checks run on every cache candidate that passed cosine.

Cosine on sentence embeddings cannot see one-token edits ("open" vs "closed" scores ~0.95), so after the ANN
search the proxy asks `find_conflict(cached_question, incoming_question)`; any non-None answer is the name of the
rule that makes it a miss. The rules (rules.py, word lists in data/) look only at what decides an answer and never
at phrasing, so typos, filler and synonyms pass.

Earlier turns of a conversation are proxy/conversation.py's business; it asks the guard about reworded user turns.
"""

from __future__ import annotations

from ..guard_scripts import find_script_conflict, is_foreign
from .features import features
from .rules import RULE_NAMES, RULES, Pair, frame_swap

NO_KIND = frozenset({"procedure", "yes-no"})  # "How do I…" and "Can I…" want one answer in the grey band

__all__ = ["RULE_NAMES", "features", "find_conflict", "grey_conflict", "restates"]


def find_conflict(cached: str, incoming: str, similarity: float | None = None) -> str | None:
    """Name of the first rule saying the two questions need different answers, or None if none does.
    `similarity` (the default model's cosine of the two) lets near-identical swaps pass (rules.SWAP_SIMILARITY)."""
    if cached == incoming:
        return None
    if is_foreign(cached) or is_foreign(incoming):
        return find_script_conflict(cached, incoming)  # the rules below read English words only
    pair = Pair(cached, incoming, similarity)
    for name, rule in RULES:
        if rule(pair):
            return name
    return None


def grey_conflict(cached: str, incoming: str, kinds: bool = True) -> bool:
    """Whether a candidate the default model scores below the threshold differs in a way the second opinion cannot
    be trusted with, since e5 scores it high too: one frame with swapped content words (rules.frame_swap: "reset my
    password" / "delete my account"), or, with `kinds`, questions whose opening question words want another kind
    of answer or one kind against none ("Is parking free?" / "Where can I park?")."""
    if is_foreign(cached) or is_foreign(incoming):
        return False
    pair = Pair(cached, incoming)
    return (kinds and pair.a.asks - NO_KIND != pair.b.asks - NO_KIND) or frame_swap(pair)


def restates(question: str, closer: str, rival: str) -> bool:
    """Whether `closer` uses only content words of `question` and `rival` does not: "Please tell me how to configure
    the rate limit" restates "How do I configure the rate limit?", not "How do I enable the rate limit?"."""
    words = features(question).content
    return features(closer).content <= words and not features(rival).content <= words

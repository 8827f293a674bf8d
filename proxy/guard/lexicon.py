"""The guard's word lists and tables, read once from the YAML files in data/ (edit those, not this module)."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


def _load(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    data = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if not isinstance(data, dict):
        raise ValueError(f"proxy/guard/data/{name}: expected a mapping")
    return data


_WORDS = _load("words.yaml")
_NUMBERS = _load("numbers.yaml")
_SYNONYMS = _load("synonyms.yaml")


def _set(name: str) -> frozenset[str]:
    return frozenset(_WORDS[name].split())


STOPWORDS = _set("stopwords")
UNIT_SUFFIXES = _set("unit_suffixes")
NOT_NAMES = _set("not_names")
GENERIC_WORDS = _set("generic_words")
FILLER_WORDS = _set("filler_words")
GRAMMAR_WORDS = _set("grammar_words")
PERSONAL_PRONOUNS = _set("personal_pronouns")
QUALIFYING_PREPOSITIONS = _set("qualifying_prepositions")
CLAUSE_OPENERS = _set("clause_openers")
PARTY_WORDS = _set("parties")
PEOPLE = _set("people")
DIRECTION_CUES = _set("direction_cues")
NEGATIVE_WORDS = _set("negative_words")
ENDING_WORDS = _set("ending_words")
NEGATING_PREFIXES = tuple(_WORDS["negating_prefixes"].split())
RESTATING_HEADS = _set("restating_heads")


def _verb_forms(base: str) -> set[str]:
    """A verb as a question asks it ("cancel", "cancels"): -ed forms tell what was done ("when I booked", "the
    version I have installed") and -ing forms are often nouns ("booking", "checking account")."""
    return {base, base + "es" if base.endswith(("s", "sh", "ch", "x")) else base + "s"}


ACTION_STAGES: dict[str, str] = {form: stage for stage, words in _WORDS["actions"].items()
                                 for base in words.split() for form in _verb_forms(base)}
ACTION_PHRASES = [(re.compile(pattern), stage) for stage, patterns in _WORDS["action_phrases"].items()
                  for pattern in patterns]
PART_PHRASES = [re.compile(pattern) for pattern in _WORDS["part_phrases"]]
REWRITES = [(re.compile(pattern), replacement) for pattern, replacement in _load("phrases.yaml")["rewrites"]]
# Matches where any rewrite would: most texts have none, and one search is cheaper than every rewrite's scan.
ANY_REWRITE = re.compile("|".join(f"(?:{pattern.pattern})" for pattern, _ in REWRITES))

WORD_NUMBERS: dict[str, float] = {w: float(v) for w, v in _NUMBERS["word_numbers"].items()}
CALENDAR: dict[str, str] = {
    **{name: name for name in _NUMBERS["calendar_names"].split()},
    **{str(k): str(v) for k, v in _NUMBERS["calendar_aliases"].items()},
}
SYNONYMS: dict[str, str] = {str(k): str(v) for k, v in _SYNONYMS["fold"].items()}
SWAP_SYNONYMS: dict[str, str] = {
    word: group.split()[0] for group in _SYNONYMS["swap_groups"] for word in group.split()
}


@lru_cache(maxsize=65536)
def singular(word: str) -> str:
    if word in STOPWORDS:
        return word
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


POLE_SETS: list[tuple[frozenset[str], ...]] = [
    tuple(frozenset(map(singular, side.split())) for side in pair.split("/")) for pair in _load("poles.yaml")["poles"]
]
CLOSED_CLASS_SETS: dict[str, frozenset[str]] = {
    name: frozenset(singular(w) for w in words.split()) for name, words in _load("classes.yaml").items()
}
KNOWN_TERMS = frozenset(map(singular, _WORDS["known_terms"].split()))


def _load_wordnet() -> dict[str, list[int]]:
    """Each word (multi-word lemmas joined by "_") to the WordNet synonym sets it is in (data/wordnet_synonyms.txt)."""
    groups: dict[str, list[int]] = {}
    text = resources.files(__package__).joinpath("data", "wordnet_synonyms.txt").read_text(encoding="utf-8")
    for n, line in enumerate(text.splitlines()):
        if not line.startswith("#"):
            for word in line.split():
                if word in groups:
                    groups[word].append(n)
                else:
                    groups[word] = [n]
    return groups


# Read at import (start-up), not on the first request that needs it.
WORDNET = _load_wordnet()


def _lines(name: str) -> list[str]:
    text = resources.files(__package__).joinpath("data", name).read_text(encoding="utf-8")
    return [line for line in text.splitlines() if not line.startswith("#")]


ADVERBS = frozenset(_lines("wordnet_adverbs.txt"))


def _load_antonyms() -> dict[str, frozenset[str]]:
    opposites: dict[str, set[str]] = {}
    for line in _lines("wordnet_antonyms.txt"):
        x, y = line.split()
        opposites.setdefault(x, set()).add(y)
        opposites.setdefault(y, set()).add(x)
    return {word: frozenset(others) for word, others in opposites.items()}


ANTONYMS = _load_antonyms()


# Inflections tried back to a WordNet lemma: "quickest" -> "quick", "activated" -> "activate".
_LEMMA_ENDINGS = (("iest", "y"), ("ies", "y"), ("ied", "y"), ("est", ""), ("er", ""), ("ing", ""), ("ing", "e"),
                  ("ed", ""), ("ed", "e"), ("es", ""), ("s", ""))


def _lemmas(phrase: str) -> set[str]:
    word = phrase.replace(" ", "_")
    found = {word}
    for ending, replacement in _LEMMA_ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 3:
            found.add(word[: -len(ending)] + replacement)
    return found


def common_word(word: str) -> bool:
    """Whether WordNet knows the word (in some form) as an ordinary English word."""
    return any(w in WORDNET for w in _lemmas(word))


def wordnet_antonyms(x: str, y: str) -> bool:
    """Whether WordNet makes the two words opposites in one of their most frequent senses ("compulsory"/"optional")."""
    right = _lemmas(y)
    return any(not right.isdisjoint(ANTONYMS.get(w, ())) for w in _lemmas(x))


def wordnet_synonyms(x: str, y: str) -> bool:
    """Whether one WordNet synset, among the most frequent senses of each, holds both phrases."""
    left = {n for w in _lemmas(x) for n in WORDNET.get(w, ())}
    return any(n in left for w in _lemmas(y) for n in WORDNET.get(w, ()))

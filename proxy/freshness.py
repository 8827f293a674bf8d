"""Time-sensitive questions: answers that depend on when they are asked ("What's the weather today?").

The word lists are data (proxy/data/freshness/<language>.txt, format in the README there): sections of regular
expressions, one per reason. A question is time-sensitive when a reason's pattern matches and no `[timeless]`
pattern does; `[quoted]` spans (titles, words asked about, code) are removed first. A language's lists apply to
every question written in its script (so a question mixing languages is still caught, and a Latin-only question
never pays for the Arabic lists). Only the head and tail of a long message are read: the question is there.
"""

from __future__ import annotations

import functools
import re
import re._constants as sre  # the parsed form of a pattern, to find the words every match must contain
import re._parser as sre_parse
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable

DATA = ("data", "freshness")
TIMELESS = "timeless"
QUOTED = "quoted"
# The script each language is written in; a language's lists apply when the text has a character of it.
SCRIPT_OF = {"en": "latin", "de": "latin", "fr": "latin", "es": "latin", "ru": "cyrillic", "zh": "han",
             "ja": "japanese", "ko": "hangul", "ar": "arabic"}
LANGUAGES = tuple(SCRIPT_OF)
SCRIPTS = {
    "latin": re.compile(r"[A-Za-zÀ-ɏ]"),
    "cyrillic": re.compile(r"[Ѐ-ӿ]"),
    "han": re.compile(r"[一-鿿]"),
    "japanese": re.compile(r"[぀-ヿ一-鿿]"),
    "hangul": re.compile(r"[가-힯ᄀ-ᇿ]"),
    "arabic": re.compile(r"[؀-ۿ]"),
}
HEAD_TAIL = 500  # characters read from each end of a longer text
CACHED = 10_000  # distinct questions whose verdict is remembered (repeated questions are the hot path)



@dataclass(frozen=True)
class Gated:
    """Patterns run only when the lowercased text contains one of their words: one regex search per character
    costs ~5 µs with hundreds of alternatives, a substring test next to nothing."""
    always: re.Pattern[str] | None
    gated: tuple[tuple[frozenset[str], re.Pattern[str]], ...]

    def search(self, text: str, lowered: str) -> bool:
        if self.always is not None and self.always.search(text):
            return True
        return any(any(word in lowered for word in words) and pattern.search(text) for words, pattern in self.gated)


@dataclass(frozen=True)
class ScriptLists:
    reasons: tuple[tuple[str, Gated], ...]
    timeless: Gated


@dataclass(frozen=True)
class FreshnessDetector:
    lists: dict[str, ScriptLists]
    quoted: re.Pattern[str] | None

    def reason(self, text: str) -> str | None:
        """Why `text` is time-sensitive (a reason name such as "weather"), or None when it is timeless."""
        if len(text) > 2 * HEAD_TAIL:
            text = f"{text[:HEAD_TAIL]}\n{text[-HEAD_TAIL:]}"
        if self.quoted is not None:
            text = self.quoted.sub(" ", text)
        lowered = text.lower()
        present = [lists for script, lists in self.lists.items() if SCRIPTS[script].search(text)]
        found = next((name for lists in present for name, gated in lists.reasons if gated.search(text, lowered)),
                     None)
        if found is None or any(lists.timeless.search(text, lowered) for lists in present):
            return None
        return found


def _join(patterns: list[str]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None


def required_words(items: list[tuple[object, object]]) -> frozenset[str] | None:
    """Words one of which every match of the parsed sequence contains (lowercased), or None if unsure."""
    options: list[frozenset[str]] = []
    run = ""
    for op, arg in items:
        if op is sre.LITERAL:
            run += chr(arg).lower()  # type: ignore[arg-type]
            continue
        if run:
            options.append(frozenset([run]))
            run = ""
        found: frozenset[str] | None = None
        if op is sre.SUBPATTERN:
            found = required_words(list(arg[3]))  # type: ignore[index]
        elif op is sre.BRANCH:
            branches = [required_words(list(b)) for b in arg[1]]  # type: ignore[index]
            found = None if any(b is None for b in branches) else frozenset().union(*branches)  # type: ignore[arg-type]
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and arg[0] >= 1:  # type: ignore[index]
            found = required_words(list(arg[2]))  # type: ignore[index]
        elif op is sre.IN and all(o is sre.LITERAL for o, _ in arg):  # type: ignore[attr-defined]
            found = frozenset(chr(c).lower() for _, c in arg)  # type: ignore[attr-defined]
        if found:
            options.append(found)
    if run:
        options.append(frozenset([run]))
    return max(options, key=lambda words: min(map(len, words)), default=None)  # longer words gate better


def _gate(patterns: list[str]) -> Gated:
    always, gated = [], []
    for pattern in patterns:
        words = required_words(list(sre_parse.parse(pattern, re.IGNORECASE)))
        if words is None:
            always.append(pattern)
        else:
            gated.append((words, re.compile(pattern, re.IGNORECASE)))
    return Gated(_join(always), tuple(gated))


def parse_lists(texts: dict[str, str]) -> FreshnessDetector:
    """{language: file text} -> a detector; within a script, reasons keep the order they first appear in."""
    by_script: dict[str, dict[str, list[str]]] = {}
    quoted: list[str] = []
    for language, text in texts.items():
        sections = by_script.setdefault(SCRIPT_OF.get(language, "latin"), {})
        section = None
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1]
                continue
            if section is None:
                raise ValueError(f"{language}.txt:{n}: a pattern before any [section]")
            try:
                re.compile(line)
            except re.error as exc:
                raise ValueError(f"{language}.txt:{n}: not a regular expression: {exc}") from exc
            (quoted if section == QUOTED else sections.setdefault(section, [])).append(line)
    lists = {}
    for script, sections in by_script.items():
        reasons = tuple((name, _gate(patterns)) for name, patterns in sections.items() if name != TIMELESS)
        lists[script] = ScriptLists(reasons, _gate(sections.get(TIMELESS, [])))
    return FreshnessDetector(lists, _join(quoted))


def _data_dir() -> Traversable:
    folder = resources.files("proxy")
    for part in DATA:
        folder = folder.joinpath(part)
    return folder


@functools.cache
def default_detector() -> FreshnessDetector:
    folder = _data_dir()
    return parse_lists({lang: folder.joinpath(f"{lang}.txt").read_text(encoding="utf-8") for lang in LANGUAGES})


@functools.lru_cache(maxsize=CACHED)
def time_sensitivity(text: str) -> str | None:
    """The reason `text` is time-sensitive with the shipped word lists, or None."""
    return default_detector().reason(text)

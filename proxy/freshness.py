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


def required_words(pattern: str) -> frozenset[str] | None:
    r"""Words (lowercased) one of which every match of `pattern` contains, or None if unsure: the pattern then
    always runs. Read from the pattern's text: literal runs, groups, alternatives, classes of plain characters and
    quantifiers are understood; anything else (lookarounds, escapes like \d, `.`) contributes no word."""
    try:
        words, end = _alternatives(pattern, 0)
    except _Unsure:
        return None
    return words if end == len(pattern) else None


class _Unsure(Exception):
    """A construct the reader does not know: no gate for this pattern."""


_QUANTIFIER = re.compile(r"[?*+]|\{(\d*)(?:,(\d*))?\}")
_GROUP_FLAGS = re.compile(r"\?[aiLmsux-]*:|\?P<\w+>")
_LOOKAROUND = re.compile(r"\?(?:=|!|<=|<!)")
_META = frozenset(".^$")


def _alternatives(p: str, i: int) -> tuple[frozenset[str] | None, int]:
    branches = []
    while True:
        words, i = _sequence(p, i)
        branches.append(words)
        if i < len(p) and p[i] == "|":
            i += 1
            continue
        break
    if any(b is None for b in branches):
        return None, i
    return frozenset().union(*branches), i  # type: ignore[arg-type]


def _sequence(p: str, i: int) -> tuple[frozenset[str] | None, int]:
    options: list[frozenset[str]] = []
    run = ""
    while i < len(p) and p[i] not in "|)":
        literal, words, i = _atom(p, i)
        least, i = _repeats(p, i)
        if literal is not None and least is None:
            run += literal.lower()
            continue
        if run:
            options.append(frozenset([run]))
            run = ""
        if literal is not None and least:
            options.append(frozenset([literal.lower()]))
        elif words and (least is None or least >= 1):
            options.append(words)
    if run:
        options.append(frozenset([run]))
    return max(options, key=lambda words: min(map(len, words)), default=None), i  # longer words gate better


def _atom(p: str, i: int) -> tuple[str | None, frozenset[str] | None, int]:
    """One atom at `i`: (its literal character, or the words it requires), and where it ends."""
    char = p[i]
    if char == "\\":
        escaped = p[i + 1:i + 2]
        if not escaped or escaped in "uxUN":  # a character by its code: not worth reading
            raise _Unsure
        # Escaped punctuation is itself; letters and digits are classes, anchors, codes or back-references.
        return (None if escaped.isalnum() else escaped), None, i + 2
    if char == "[":
        return _char_class(p, i)
    if char == "(":
        if p.startswith("?#", i + 1):
            return None, None, p.index(")", i) + 1
        head = _GROUP_FLAGS.match(p, i + 1) or _LOOKAROUND.match(p, i + 1)
        if p.startswith("?", i + 1) and head is None:
            raise _Unsure
        words, end = _alternatives(p, head.end() if head else i + 1)
        if end >= len(p) or p[end] != ")":
            raise _Unsure
        lookaround = head is not None and _LOOKAROUND.match(p, i + 1) is not None
        return None, None if lookaround else words, end + 1
    if char in _META:
        return None, None, i + 1
    if char in "*+?{":
        if char == "{" and _repeats(p, i)[0] is None:
            return "{", None, i + 1
        raise _Unsure  # a quantifier with nothing before it
    return char, None, i + 1


def _char_class(p: str, i: int) -> tuple[str | None, frozenset[str] | None, int]:
    """`[...]`: the set of its characters when it lists plain characters only (no range, escape or negation)."""
    negated = p.startswith("^", i + 1)
    end = i + 2 if negated else i + 1
    end += p.startswith("]", end)  # a "]" right after "[" (or "[^") is a member
    while end < len(p) and p[end] != "]":
        end += 2 if p[end] == "\\" else 1
    if end >= len(p):
        raise _Unsure
    members = p[i + 1:end]
    plain = not negated and "\\" not in members and "[" not in members and "-" not in members.strip("-")
    return None, frozenset(c.lower() for c in members) if plain else None, end + 1


def _repeats(p: str, i: int) -> tuple[int | None, int]:
    """The quantifier at `i`: (its minimum count, or None when there is none), and where it ends."""
    found = _QUANTIFIER.match(p, i)
    if found is None or found.group(0) == "{}":  # "{}" is two characters, not a count
        return None, i
    text = found.group(0)
    least = {"?": 0, "*": 0, "+": 1}.get(text)
    if least is None:
        least = int(found.group(1) or 0)
    end = found.end()
    if end < len(p) and p[end] in "?+":  # lazy or possessive
        end += 1
    return least, end


def _gate(patterns: list[str]) -> Gated:
    always, gated = [], []
    for pattern in patterns:
        words = required_words(pattern)
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

"""Time-sensitive questions: answers that depend on when they are asked ("What's the weather today?").

The word lists are data (proxy/data/freshness/<language>.txt, format in the README there): sections of regular
expressions, one per reason. A question is time-sensitive when a reason's pattern matches and no `[timeless]`
pattern does; `[quoted]` spans (titles, words asked about) are removed first. Every language's lists apply to
every question: the scripts barely overlap, and a question mixing languages is still caught.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable

DATA = ("data", "freshness")
LANGUAGES = ("en", "zh", "ja", "ko", "ru", "de", "fr", "es", "ar")
TIMELESS = "timeless"
QUOTED = "quoted"


@dataclass(frozen=True)
class FreshnessDetector:
    reasons: tuple[tuple[str, re.Pattern[str]], ...]
    timeless: re.Pattern[str] | None
    quoted: re.Pattern[str] | None

    def reason(self, text: str) -> str | None:
        """Why `text` is time-sensitive (a reason name such as "weather"), or None when it is timeless."""
        if self.quoted is not None:
            text = self.quoted.sub(" ", text)
        found = next((name for name, pattern in self.reasons if pattern.search(text)), None)
        if found is None or (self.timeless is not None and self.timeless.search(text)):
            return None
        return found


def parse_lists(texts: dict[str, str]) -> FreshnessDetector:
    """{language: file text} -> a detector; sections keep the order they first appear in."""
    sections: dict[str, list[str]] = {}
    for language, text in texts.items():
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
            sections.setdefault(section, []).append(line)

    def join(patterns: list[str] | None) -> re.Pattern[str] | None:
        return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE) if patterns else None

    reasons = tuple((name, pattern) for name, patterns in sections.items() if name not in (TIMELESS, QUOTED)
                    for pattern in [join(patterns)] if pattern is not None)
    return FreshnessDetector(reasons, join(sections.get(TIMELESS)), join(sections.get(QUOTED)))


def _data_dir() -> Traversable:
    folder = resources.files("proxy")
    for part in DATA:
        folder = folder.joinpath(part)
    return folder


@functools.cache
def default_detector() -> FreshnessDetector:
    folder = _data_dir()
    return parse_lists({lang: folder.joinpath(f"{lang}.txt").read_text(encoding="utf-8") for lang in LANGUAGES})


def time_sensitivity(text: str) -> str | None:
    """The reason `text` is time-sensitive with the shipped word lists, or None."""
    return default_detector().reason(text)

"""The time-sensitivity detector: word lists as data in every supported language, and its figures on the set."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from proxy.freshness import LANGUAGES, default_detector, parse_lists, required_words, time_sensitivity

DATA = Path(__file__).resolve().parent / "data" / "time_sensitive.jsonl"


@pytest.mark.parametrize(("text", "reason"), [
    ("What's the weather in Paris today?", "relative_day"),
    ("What is today's date?", "clock"),
    ("What's the latest version of Python?", "latest"),
    ("Who won last night's game?", "relative_day"),
    ("Wie wird das Wetter morgen?", "relative_day"),
    ("现在几点了？", "clock"),
])
def test_time_sensitive_questions_are_caught_with_a_reason(text, reason):
    assert time_sensitivity(text) == reason


@pytest.mark.parametrize("text", [
    "What happened in 1969?",
    "What day of the week was 1 Jan 2000?",
    "In Python, how do I get today's date?",
    'Summarize the plot of "The Day After Tomorrow".',
    "Schreib ein Gedicht über den Morgen.",
    "2000年1月1日是星期几？",
    "Who sang Tomorrow Never Dies?",
    "Сколько времени варить яйцо?",
    "天気はどうやって決まるの？",
])
def test_look_alikes_are_timeless(text):
    assert time_sensitivity(text) is None


def test_every_language_ships_word_lists():
    assert len(LANGUAGES) == 9
    detector = default_detector()
    assert set(detector.lists) == {"latin", "cyrillic", "han", "japanese", "hangul", "arabic"}
    for lists in detector.lists.values():
        assert {name for name, _ in lists.reasons} >= {"clock", "relative_day", "now", "latest", "weather",
                                                        "prices", "scores", "countdown", "age", "status"}
        assert lists.timeless is not None
    assert detector.quoted is not None


def test_only_the_ends_of_a_long_message_are_read():
    filler = "Here is some text about rivers. " * 100
    assert time_sensitivity(f"{filler}What's the weather in Oslo today?") == "relative_day"
    assert time_sensitivity(f"Today I pasted this. {filler}") == "relative_day"
    assert time_sensitivity(f"{filler[:600]}today{filler[:600]}") is None


def test_bad_pattern_names_the_file_and_line():
    with pytest.raises(ValueError, match=r"xx.txt:2: not a regular expression"):
        parse_lists({"xx": "[now]\n(unclosed\n"})
    with pytest.raises(ValueError, match=r"xx.txt:1: a pattern before any \[section\]"):
        parse_lists({"xx": "today\n"})


def test_labelled_set_stays_at_its_measured_figures():
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines()]
    assert {r["lang"] for r in rows} == set(LANGUAGES) and len(rows) >= 400
    sensitive = [r for r in rows if r["time_sensitive"]]
    timeless = [r for r in rows if not r["time_sensitive"]]
    caught = sum(time_sensitivity(r["text"]) is not None for r in sensitive)
    false = sum(time_sensitivity(r["text"]) is not None for r in timeless)
    # Over both halves (bench/QUALITY.md has the held-out figures): a change to the lists must not lose ground.
    assert caught / len(sensitive) >= 0.99
    assert false / len(timeless) <= 0.02


@pytest.mark.parametrize(("pattern", "words"), [
    (r"\btoday\b", {"today"}),
    (r"colou?r", {"colo"}),
    (r"\b(today|tonight)('?s)?\b", {"today", "tonight"}),
    (r"\bweather (in|at)\b", {"weather "}),
    (r"(?:very )+hot", {"very "}),
    (r"(?:very )?hot", {"hot"}),
    (r"(?-i:Morgen)", {"morgen"}),
    (r"(?:ab){2}c", {"ab"}),
    (r"[ab]x", {"a", "b"}),
    (r"\bis [\w.\- ]{1,25} down\b", {" down"}),
    (r"a{}b", {"a{}b"}),
])
def test_required_words_are_read_from_the_pattern_text(pattern, words):
    assert required_words(pattern) == words


@pytest.mark.parametrize("pattern", [r"\d+ ?(am|pm)?", r"(?i)today", r"x|\w+", r"(?=today)", r".*", r"(?P=n)x",
                                     r"\u0041bc"])
def test_a_pattern_without_a_sure_word_always_runs(pattern):
    assert required_words(pattern) is None


def test_every_shipped_pattern_match_contains_one_of_its_gate_words():
    """A gate word missing from a text the pattern matches would hide a time-sensitive question: checked for every
    shipped pattern on every labelled question (and a few extra spellings) it matches."""
    texts = [json.loads(line)["text"] for line in DATA.read_text(encoding="utf-8").splitlines()]
    texts += ["WHAT TIME IS IT NOW?", "Weather   forecast for TOMORROW", "Is GitHub down right now?"]
    folder = Path(__file__).resolve().parent.parent / "proxy" / "data" / "freshness"
    checked = 0
    for path in folder.glob("*.txt"):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#") or (line.startswith("[") and line.endswith("]")):
                continue
            pattern, words = re.compile(line, re.IGNORECASE), required_words(line)
            for text in texts:
                if pattern.search(text):
                    checked += 1
                    assert words is None or any(w in text.lower() for w in words), (path.name, line, text)
    assert checked > 500

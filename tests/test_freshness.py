"""The time-sensitivity detector: word lists as data in every supported language, and its figures on the set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proxy.freshness import LANGUAGES, default_detector, parse_lists, time_sensitivity

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

"""The guard's rules, one positive (rejects) and one negative (lets a paraphrase through) example each."""

import pytest

from proxy.guard import context_conflict, context_text, find_conflict


@pytest.mark.parametrize(
    ("cached", "incoming", "rule"),
    [
        ("How many seats are left on the 3 o'clock bus?", "How many seats are left on the 4 o'clock bus?", "number"),
        ("Wake me at 6am", "Wake me at 6pm", "number"),
        ("What changed in release v2.1?", "What changed in release v2.2?", "number"),
        ("Is parking free for two hours?", "Is parking free for three hours?", "number"),
        ("Is the gym busy on Tuesdays?", "Is the gym busy on Thursdays?", "calendar"),
        ("Should I water the lawn?", "Should I not water the lawn?", "negation"),
        ("Can I return shoes I have worn?", "Can I return shoes I haven't worn?", "negation"),
        ("Is this mushroom edible?", "Is this mushroom inedible?", "negation"),
        ("Is the museum open on bank holidays?", "Is the museum closed on bank holidays?", "polarity"),
        ("How do I enable dark mode?", "How do I disable dark mode?", "polarity"),
        ("Should I buy shares before the dividend date?", "Should I sell shares before the dividend date?", "polarity"),
        ("Who founded Tesla?", "Who founded Nvidia?", "entity"),
        ("How do I install node on ubuntu?", "How do I install node on windows?", "entity"),
        ("Translate this from German to Italian", "Translate this from Italian to German", "direction"),
        ("Which vaccines does my dog need?", "Which vaccines does my cat need?", "scope"),
        ("How much is a gym pass for adults?", "How much is a gym pass for seniors?", "scope"),
        ("What are the side effects of aspirin?", "What are the side effects of aspirin in pregnancy?", "scope"),
    ],
)
def test_rejects(cached: str, incoming: str, rule: str) -> None:
    assert find_conflict(cached, incoming) == rule


@pytest.mark.parametrize(
    ("cached", "incoming"),
    [
        ("How many seats are left on the 3 o'clock bus?", "how many seats are lft on the 3 o'clock bus"),
        ("Wake me at 6am", "Please wake me at 6 am"),
        ("Is parking free for two hours?", "Is parking free for 2 hours?"),
        ("Is the gym busy on Tuesdays?", "Does the gym get busy on Tuesdays?"),
        ("I can't sign in to my account", "I cannot sign in to my account"),
        ("What's the fee for non-residents?", "What's the fee if I'm not a resident?"),
        ("Is the museum open on bank holidays?", "Is the museum open on bank holidays??"),
        ("Who founded Tesla?", "who founded tesla"),
        ("Who founded Tesla?", "WHO FOUNDED TESLA?"),
        ("When does the Wembley box office open?", "When does the Wembly box office open?"),
        ("Translate this sentence from German to Italian", "Please translate this sentence from German to Italian"),
        ("Which vaccines do my kids need?", "Which vaccines do my children need?"),
        ("How do I request a copy of my contract?", "How can I get a copy of my contract?"),
        ("How do I reset my router?", "Hi, quick one: how do I reset my router? Thanks"),
        ("Where can I park near the library?", "Near the library, where can I park?"),
    ],
)
def test_allows_paraphrases(cached: str, incoming: str) -> None:
    assert find_conflict(cached, incoming) is None


def test_identical_texts_never_conflict() -> None:
    assert find_conflict("Cancel it", "Cancel it") is None


def test_context_text_reads_strings_and_text_parts() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "My  order"}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "content": None},
    ]
    assert context_text(messages) == "system: Be brief.\nuser: My order\nassistant: "


def test_context_conflict() -> None:
    assert context_conflict("", "", 0.0, 1.0) is None
    assert context_conflict("user: hi", "user: hi", 1.0, 1.0) is None
    assert context_conflict("", "user: hi", 1.0, 0.5) == "context"
    assert context_conflict("user: my plan is Basic", "user: my plan is Gold", 0.99, 1.0) == "context"
    assert context_conflict("user: order 1234 is late", "user: order 1235 is late", 0.99, 0.9) == "context-number"
    assert context_conflict("user: my order is late", "user: my order is late!", 0.99, 0.9) is None

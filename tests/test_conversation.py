"""Conversations by meaning (proxy/conversation.py): the context read back exactly, self-contained questions,
turn alignment and conversations told twice with the real model, the lookup over each store and the app end to
end."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from proxy.canonical import Owner, build_chat_request, tenant_of, validate_body
from proxy.conversation import (
    MAX_ALIGNED_TURNS,
    MAX_NEW_EMBEDDINGS,
    TURN_RULES,
    LookupBudget,
    TurnVectors,
    accepts,
    context_rejection,
    names,
    numbers,
    read_context,
    self_contained,
    turns_rejection,
)
from proxy.guard.rules import RULE_NAMES
from proxy.policies import PolicySet, builtin_policy
from proxy.stores.base import Entry

pytestmark = pytest.mark.anyio
POLICY = builtin_policy()
EXACT = dataclasses.replace(POLICY, conversations="exact")

PASSWORD = "How do I reset my password?"
PASSWORD_REWORDED = "How can I reset my password?"
ANSWER = "Open Settings > Security and choose 'Reset password'. We email you a link."
FOLLOW_UP = "What if I no longer have access to my email?"


def request(messages: list[dict[str, Any]]):
    body = validate_body({"model": "m", "messages": messages})
    return build_chat_request(body, Owner(tenant_of("Bearer k")))


def chat(*turns: str, system: str | None = None) -> list[dict[str, Any]]:
    """Alternating user/assistant turns, the last one the user's question."""
    prompt = [{"role": "system", "content": system}] if system else []
    return prompt + [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def answer(text: str) -> dict:
    return {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}]}


def test_context_is_read_back_exactly():
    built = request(chat("hi\nthere", "hello", "system: not a role line?", system="Be brief."))
    context = read_context(built.context_text, built.context_digest)
    assert context is not None
    assert context.prompts == ("system: Be brief.",)
    assert context.turns == (("user", "hi\nthere"), ("assistant", "hello"))


@pytest.mark.parametrize("messages", [
    chat("first line\nuser: looks like a turn", "ok", "and now?"),  # the text cannot be split back faithfully
    [{"role": "user", "content": "hi", "name": "alice"}, {"role": "assistant", "content": "hello"},
     {"role": "user", "content": "and now?"}],  # a field the text leaves out
    [{"role": "user", "content": "weather?"}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "t", "type": "function", "function": {"name": "w", "arguments": "{}"}}]},
     {"role": "tool", "tool_call_id": "t", "content": "sunny"}, {"role": "user", "content": "and now?"}],
])
def test_contexts_the_text_does_not_capture_are_never_compared_by_meaning(messages):
    built = request(messages)
    assert read_context(built.context_text, built.context_digest) is None


@pytest.mark.parametrize("question", [
    "Is PulseFit open on Christmas Day?",
    "What's the weight limit for cabin bags?",
    "Do you charge anything if I pay by card instead of direct debit?",
    "Do you accept Amex?",
    "How many screens can stream at the same time on the Family plan?",
])
def test_self_contained_questions(question):
    assert self_contained(question)


@pytest.mark.parametrize("question", [
    "cancel it",
    "How much does it cost?",
    "yes please, go ahead",
    "the second one",
    "how much notice do I need to give?",  # names no subject of its own
    "What's the deadline?",
    "Is the museum open on Sundays?",  # which museum: days say when, not what
    "so what's the total then?",
    "¿Cuánto cuesta el envío a Madrid?",  # not English: the word lists cannot tell
])
def test_questions_that_lean_on_the_conversation(question):
    assert not self_contained(question)


@pytest.fixture
def embed(real_embedder):
    async def run(texts: list[str]) -> np.ndarray:
        return np.asarray(real_embedder.embed(texts))
    return run


def turns(*texts: str) -> tuple[tuple[str, str], ...]:
    return tuple(("user" if i % 2 == 0 else "assistant", t) for i, t in enumerate(texts))


@pytest.mark.model
async def test_reworded_user_turn_with_the_same_answer_agrees(embed):
    assert await turns_rejection(turns(PASSWORD, ANSWER), turns(PASSWORD_REWORDED, ANSWER), embed) is None


@pytest.mark.model
@pytest.mark.parametrize(("cached", "incoming", "reason"), [
    # a changed detail in a user turn: the guard refuses the rewording, and 4 replaced by 12 the told-twice reading
    (turns("Book a table for 4 people on Friday", "Done."), turns("Book a table for 12 people on Friday", "Done."),
     "context-facts"),
    # the assistant offered something else: "yes please" means another thing
    (turns("My plan renews tomorrow", "Shall I cancel it?"), turns("My plan renews tomorrow", "Shall I renew it?"),
     "context-assistant"),
    # options in another order: "the second one" is the other option
    (turns("Which plans?", "1) Basic at £5, 2) Pro at £9"), turns("Which plans?", "1) Pro at £9, 2) Basic at £5"),
     "context-assistant"),
    # another subject with the same reply text: the replaced turn's counterpart substitutes the subject
    (turns("I want to cancel my gym membership", "Sure."), turns("I want to cancel my phone contract", "Sure."),
     "context-replaced"),
    # the user said the same, the assistant offered another action: "yes please" means another thing
    (turns("My Skyline plan renews on Friday", "Shall I cancel it before then?", "hmm, what would that cost?",
           "Nothing, cancelling is free."),
     turns("My Skyline plan renews on Friday", "Shall I move you to the Basic plan?", "hmm, what would that cost?",
           "Nothing, switching is free."), "context-assistant"),
    # the same exchange about another service
    (turns("I'm 4 months into a 12 month Skyline mobile contract at £18 a month", "Thanks. What can I help with?"),
     turns("I'm 4 months into a 12 month PulseFit gym membership at £18 a month", "Got it, how can I help?"),
     "context-facts"),
])
async def test_changed_turns_refuse(embed, cached, incoming, reason):
    assert await turns_rejection(cached, incoming, embed) == reason


@pytest.mark.model
async def test_a_conversation_told_twice_agrees(embed):
    # both roles reworded, the facts in another order and spelled otherwise ("four" / "4", "£18/month")
    cached = turns("I'm four months into a 12 month Skyline mobile contract at £18 a month",
                   "Thanks for the details. What would you like to know?")
    incoming = turns("My Skyline mobile plan is £18/month on a 12-month term, and I'm 4 months in",
                     "Got it, what can I help with?")
    assert await turns_rejection(cached, incoming, embed) is None


@pytest.mark.model
async def test_yes_to_another_offer_refuses_even_when_everything_is_reworded(embed):
    cached = turns("I've got the 9:10 Monday slot with Dr Reyes but my daughter is ill",
                   "Sorry to hear that. Shall I cancel your Monday appointment so someone else can have it?")
    incoming = turns("Is the 9:10 Monday slot with Dr Reyes still free? My daughter is ill so I'm home anyway",
                     "It is. Shall I book you into the Monday 9:10 slot with Dr Reyes?")
    assert await turns_rejection(cached, incoming, embed, question="go ahead") == "context-offer"
    # the very same user words before another offer: refused before any comparison by meaning
    assert await turns_rejection(cached, cached[:1] + incoming[1:], embed, question="go ahead") == "context-assistant"


@pytest.mark.parametrize(("question", "accepting"), [
    ("yes please", True), ("go ahead", True), ("the second one", True), ("ok do it", True),
    ("ok so how much do I get back altogether?", False), ("how much would it cost to leave now?", False),
])
def test_replies_that_take_up_an_offer(question, accepting):
    assert accepts(question) is accepting


def test_facts_are_spelled_alike():
    assert numbers("six months at £3,000.00 and 5.50") == numbers("6 months at £3000 and 5.5") == {"6", "3000", "5.5"}
    assert numbers("the 5GB one") == {"5"}  # "one" is a pronoun more often than a number
    assert names("My Harbour Bank card ref SKL4T7, on Monday") == {"harbour", "bank", "skl4t7"}


def test_the_turn_rules_are_the_guards():
    assert TURN_RULES <= set(RULE_NAMES)


@pytest.mark.model
async def test_a_detour_is_skipped_but_never_the_exchange_before_the_question(embed):
    cached = turns(PASSWORD, ANSWER)
    detour = turns("Is the app down today?", "No, all systems are running.")
    assert await turns_rejection(cached, (*detour, *cached), embed) is None
    assert await turns_rejection(cached, (*cached, *detour), embed) == "context-replaced"
    assert await turns_rejection((), cached, embed) == "context-turns"  # "it" in a fresh chat vs after a topic


async def test_overlong_conversations_are_not_aligned():
    async def never(texts: list[str]) -> np.ndarray:
        raise AssertionError("nothing to embed")

    chat_turns = turns(*[f"turn {n}" for n in range(MAX_ALIGNED_TURNS + 2)])
    assert await turns_rejection(chat_turns[2:], chat_turns, never) == "context-turns"
    at_limit = chat_turns[:MAX_ALIGNED_TURNS]
    assert await turns_rejection(at_limit, at_limit, never) is None


async def put(cache, messages, policy=POLICY) -> None:
    cache.submit(request(messages), policy, answer(f"about {messages[-1]['content']}"))
    await cache.drain()


async def served(cache, messages, policy=POLICY) -> str | None:
    hit = (await cache.lookup(request(messages), policy, None)).hit
    return None if hit is None else hit.record.response["choices"][0]["message"]["content"]


@pytest.mark.model
async def test_lookup_matches_conversations_by_meaning_over_each_store(tmp_path, opened, real_embedder):
    async with opened(tmp_path, real_embedder) as cache:
        await put(cache, chat(PASSWORD, ANSWER, FOLLOW_UP, system="You are Acme's helpdesk."))
        reworded = chat(PASSWORD_REWORDED, ANSWER, FOLLOW_UP, system="You are Acme's helpdesk.")
        assert await served(cache, reworded) == f"about {FOLLOW_UP}"
        assert await served(cache, reworded, EXACT) is None
        assert await served(cache, chat(PASSWORD_REWORDED, ANSWER, FOLLOW_UP, system="You are a pirate.")) is None
        assert await served(cache, chat("How do I delete my account?", ANSWER, FOLLOW_UP,
                                        system="You are Acme's helpdesk.")) is None
        # a self-contained question after unrelated turns: judged by itself, the system prompt still counts
        await put(cache, chat("hi", "Hello! How can I help?", "Is Acme open on Christmas Day?"))
        other_talk = chat("my parcel is late", "Sorry, it is on its way.", "Is Acme open on Christmas Day?")
        assert await served(cache, other_talk) == "about Is Acme open on Christmas Day?"
        assert await served(cache, other_talk, EXACT) is None


# One conversation and the ways another can differ from it: the last message is the same in all of them.
CONTRACT = ["I'm four months into a 12 month Skyline mobile contract at £18 a month",
            "Thanks for the details. What would you like to know?"]
LEAVE = "how much would it cost to leave now?"
OPTIONS = ["I need a copy of my last invoice and I also want to change my delivery address",
           "I can help with both. Shall I 1) email you the invoice, or 2) send you the address change form?"]
RENEWAL = ["My Skyline plan renews on Friday and I'm not sure I want it",
           "I can cancel it before Friday so you're not charged again. Shall I do that?"]


@pytest.mark.model
@pytest.mark.parametrize(("stored", "asked", "status"), [
    pytest.param(CONTRACT, ["My Skyline mobile plan is £18/month on a 12-month term, and I'm 4 months in",
                            "Got it, what can I help with?"], "HIT", id="reworded"),
    pytest.param(CONTRACT, ["Morning! Sorry, long day already. I'm four months into a 12 month Skyline mobile "
                            "contract at £18 a month", "Morning! Thanks for the details. What would you like to "
                            "know?"], "HIT", id="small-talk"),
    pytest.param(CONTRACT, ["I'm four months into a 12 month PulseFit gym membership at £18 a month",
                            "Thanks for the details. What would you like to know?"], "MISS", id="swapped-context"),
    pytest.param(CONTRACT, ["I'm seven months into a 12 month Skyline mobile contract at £18 a month",
                            "Thanks for the details. What would you like to know?"], "MISS", id="changed-detail"),
    pytest.param([*OPTIONS, "the second one"], [OPTIONS[0], "I can help with both. Shall I 1) send you the address "
                 "change form, or 2) email you the invoice?", "the second one"], "MISS", id="swapped-options"),
    pytest.param([*RENEWAL, "yes please"], [RENEWAL[0], "I can switch you to the cheaper Basic plan from Friday "
                 "instead. Shall I do that?", "yes please"], "MISS", id="flipped-intent"),
])
async def test_the_app_serves_a_conversation_told_twice_and_refuses_a_changed_one(make_proxy, real_embedder,
                                                                                   stored, asked, status):
    question = LEAVE if stored is CONTRACT else stored[-1]
    stored_turns, asked_turns = (stored, asked) if stored is CONTRACT else (stored[:-1], asked[:-1])
    async with make_proxy(policies=PolicySet([builtin_policy()]), embedder=real_embedder) as proxy:
        first = await proxy.chat(question, history=chat(*stored_turns))
        assert first.headers["X-Cache-Status"] == "MISS"
        again = await proxy.chat(question, history=chat(*asked_turns))
        assert again.headers["X-Cache-Status"] == status
        if status == "HIT":
            assert again.json()["choices"] == first.json()["choices"]
        assert len(proxy.upstream.requests) == (1 if status == "HIT" else 2)


class Counting:
    """The real model, counting the texts it is asked to embed."""

    def __init__(self, embedder) -> None:
        self.embedder = embedder
        self.texts: list[str] = []

    async def __call__(self, texts: list[str]) -> np.ndarray:
        self.texts += texts
        return np.asarray(self.embedder.embed(texts))


TASKS = ["reset my password", "change my email address", "turn on two-factor login", "download my invoices",
         "update my card details", "close my account", "export my contacts", "change the account owner",
         "add a team member", "set up single sign-on"]


def told_twice(exchanges: int) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """One support chat about `exchanges` tasks, and the same chat told again in other words (both roles)."""
    cached = [t for task in TASKS[:exchanges] for t in (
        ("user", f"How do I {task}?"), ("assistant", f"You can {task} from the settings page in a few minutes."))]
    incoming = [t for task in TASKS[:exchanges] for t in (
        ("user", f"What's the way to {task}?"), ("assistant", f"From the settings page you can {task} quickly."))]
    return tuple(cached), tuple(incoming)


def test_turn_vectors_stay_within_their_bound():
    vectors = TurnVectors(limit=3)

    async def embed(texts: list[str]) -> np.ndarray:
        raise AssertionError("never called")

    for n in range(10):
        vectors.put(embed, f"turn {n}", np.full(2, n, dtype=np.float32))
        if n == 5:
            assert vectors.get(embed, "turn 4") is not None  # used: kept over older ones
        assert len(vectors) <= 3
    assert [vectors.get(embed, f"turn {n}") is not None for n in range(10)] == [False] * 7 + [True] * 3
    assert vectors.get(embed, "turn 9")[0] == 9


@pytest.mark.model
async def test_a_repeated_comparison_embeds_nothing_new(real_embedder):
    embed = Counting(real_embedder)
    cached, incoming = told_twice(3)
    assert await turns_rejection(cached, incoming, embed) is None
    assert sorted(embed.texts) == sorted({t for _, t in (*cached, *incoming)})
    embed.texts.clear()
    assert await turns_rejection(cached, incoming, embed) is None
    assert await turns_rejection(incoming, cached, embed) is None
    assert embed.texts == []
    # The next message of the chat: only its two new turns are embedded.
    longer = (*incoming, ("user", "Thanks, that sorted it."), ("assistant", "Glad to help!"))
    assert await turns_rejection((*cached, ("user", "Thank you, that worked."), ("assistant", "Happy to help!")),
                                 longer, embed) is None
    assert sorted(embed.texts) == sorted(["Thank you, that worked.", "Happy to help!", "Thanks, that sorted it.",
                                          "Glad to help!"])


@pytest.mark.model
async def test_a_comparison_embeds_at_most_its_bound_of_new_texts(real_embedder):
    embed = Counting(real_embedder)
    cached, incoming = told_twice(MAX_NEW_EMBEDDINGS // 4 + 1)  # 4 distinct texts per exchange
    assert await turns_rejection(cached, incoming, embed) == "context-too-long"
    assert embed.texts == []  # refused before embedding anything
    # Their vectors known (another comparison embedded them), the same chat agrees.
    assert await turns_rejection(cached, incoming, embed, max_new=MAX_NEW_EMBEDDINGS * 2) is None
    embed.texts.clear()
    assert await turns_rejection(cached, incoming, embed) is None
    assert embed.texts == []


@pytest.mark.model
async def test_a_lookup_tells_twice_at_most_its_bound_of_candidates(embed):
    cached, incoming = told_twice(2)
    budget = LookupBudget(told_twice_left=2)
    assert [await turns_rejection(cached, incoming, embed, budget=budget) for _ in range(3)] == [
        None, None, "context-too-many"]
    # Turns that align never use the told-twice comparison, so never the budget.
    assert await turns_rejection(cached, cached, embed, budget=budget) is None


@pytest.mark.model
async def test_each_lookup_tells_twice_at_most_two_candidates(real_embedder):
    cached, incoming = told_twice(2)
    question = {"role": "user", "content": "And how long does that take?"}

    def messages(side):
        return [{"role": role, "content": text} for role, text in side] + [question]

    stored = request(messages(cached))
    candidate = Entry(stored.exact_key, stored.partition, "t", "m", "", stored.context_digest, stored.context_text,
                      stored.question, {}, None, 0.0, None)
    embed = Counting(real_embedder)
    asked = request(messages(incoming))
    budget = LookupBudget()
    assert [await context_rejection(asked, candidate, embed, budget) for _ in range(3)] == [
        None, None, "context-too-many"]
    assert await context_rejection(asked, candidate, embed, LookupBudget()) is None  # the next lookup

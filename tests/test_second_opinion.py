"""The multilingual model's second opinion on English candidates (proxy/cache/lookup.py `Matcher._choose`), with
the real models: rewordings MiniLM scores below the threshold answer when e5 agrees, look-alikes it does not
vouch for stay misses, near-tied contenders are ranked by e5, and a lone confident hit never pays for it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from proxy.cache import lookup
from proxy.canonical import parse_cache_control
from proxy.guard import find_conflict, grey_conflict
from proxy.policies import Policy
from proxy.terms import request_terms
from proxy.variety import slot_key

from .test_cache import answer, request

pytestmark = pytest.mark.model
POLICY = Policy()


def cosine(embedder, a: str, b: str) -> float:
    vectors = embedder.embed([a, b])
    return float(np.dot(vectors[0], vectors[1]))


async def put(cache, text: str, policy: Policy = POLICY) -> None:
    cache.submit(request(text), policy, answer(f"about {text}"))
    await cache.drain()


async def served(cache, text: str, policy: Policy = POLICY) -> str | None:
    hit = (await cache.lookup(request(text), policy, None)).hit
    return None if hit is None else hit.record.response["choices"][0]["message"]["content"]


class CountingE5:
    """The real e5 model, counting the texts it embeds (to show which lookups pay for a second opinion)."""

    def __init__(self, model) -> None:
        self.model, self.name, self.dim, self.texts = model, model.name, model.dim, 0
        self.scripts, self.languages, self.unknown_tokens = model.scripts, model.languages, model.unknown_tokens

    def embed(self, texts: list[str]) -> np.ndarray:
        self.texts += len(texts)
        return self.model.embed(texts)


# MiniLM scores these rewordings inside the grey band (from second_opinion_from up to threshold); e5 agrees.
GREY_REWORDINGS = [("How do I contact support?", "How can I get in touch with your help team?"),
                   ("How do I get a refund?", "Can I have my money back?")]
# Two stored rewordings MiniLM near-ties for "How can I get my bank statements as a PDF document?" and e5 orders
# the other way round, by more than second_opinion_tie.
NEAR_TIE = ["How do I export my bank statements to PDF?", "How do I save my bank statements as PDF documents?"]
# Another question MiniLM also puts in the band and the guard has no rule for: e5 does not vouch for it.
GREY_TRAP = ("How do I open a savings account?", "What's the interest rate on savings?")


@pytest.mark.anyio
async def test_grey_band_rewordings_hit_when_e5_agrees(tmp_path, real_embedder, e5, opened) -> None:
    async with opened(tmp_path, real_embedder, e5) as cache:
        for stored, asked in GREY_REWORDINGS:
            similarity = cosine(real_embedder, stored, asked)
            assert POLICY.second_opinion_from <= similarity < POLICY.threshold, (asked, similarity)
            assert cosine(e5, stored, asked) >= POLICY.second_opinion_threshold
            await put(cache, stored)
            assert await served(cache, asked) == f"about {stored}"
        # Without the second model (multilingual: off) MiniLM's threshold alone decides: a miss.
    async with opened(tmp_path / "minilm-only", real_embedder) as cache:
        stored, asked = GREY_REWORDINGS[0]
        await put(cache, stored)
        assert await served(cache, asked) is None


@pytest.mark.anyio
async def test_grey_band_trap_the_second_opinion_rejects(tmp_path, real_embedder, e5, opened) -> None:
    stored, asked = GREY_TRAP
    similarity = cosine(real_embedder, stored, asked)
    assert POLICY.second_opinion_from <= similarity < POLICY.threshold
    assert find_conflict(stored, asked, similarity) is None  # only e5 stands between this trap and a hit
    assert cosine(e5, stored, asked) < POLICY.second_opinion_threshold
    async with opened(tmp_path, real_embedder, e5) as cache:
        await put(cache, stored)
        lookup = await cache.lookup(request(asked), POLICY, None)
        assert lookup.hit is None
        assert lookup.nearest is not None and lookup.nearest.reason == "second opinion"
        assert cache.rejections["second opinion"] == 1  # counted for /metrics


# Look-alikes MiniLM puts in the grey band, no guard rule sees and e5 vouches for: the opening question words want
# another kind of answer, or one side wants a kind and the other none.
KIND_TRAPS = [("Is parking free?", "Where can I park?")]  # a yes or no, a place: no guard rule tells them apart


@pytest.mark.anyio
async def test_another_kind_of_answer_is_no_rewording_even_when_e5_agrees(tmp_path, real_embedder, e5,
                                                                          opened) -> None:
    async with opened(tmp_path, real_embedder, e5) as cache:
        for stored, asked in KIND_TRAPS:
            similarity = cosine(real_embedder, stored, asked)
            assert POLICY.second_opinion_from <= similarity < POLICY.threshold, (asked, similarity)
            assert cosine(e5, stored, asked) >= POLICY.second_opinion_threshold  # e5 alone would serve it
            assert find_conflict(stored, asked, similarity) is None
            await put(cache, stored)
            assert await served(cache, asked) is None
    assert not grey_conflict("Can I change my delivery address?", "Is it possible to update where my order goes?")
    assert not grey_conflict("How do I change my delivery address?", "Is it possible to update where my order goes?")


@pytest.mark.anyio
async def test_a_swap_in_one_frame_is_no_rewording_even_when_e5_agrees(tmp_path, real_embedder, e5, opened) -> None:
    stored, asked = "How do I reset my password?", "How do I delete my account?"
    similarity = cosine(real_embedder, stored, asked)
    assert POLICY.second_opinion_from <= similarity < POLICY.threshold
    assert cosine(e5, stored, asked) >= POLICY.second_opinion_threshold  # e5 alone would serve it
    assert find_conflict(stored, asked, similarity) is None
    async with opened(tmp_path, real_embedder, e5) as cache:
        await put(cache, stored)
        assert await served(cache, asked) is None
        await put(cache, "Is there step-free access at the station?")  # slips are no swap
        assert await served(cache, "Is there step-free acess at the staion?") == \
            "about Is there step-free access at the station?"


# Long questions: MiniLM in the long band (long_second_opinion_from up to long_threshold); e5 sure enough for the
# first (long_second_opinion_threshold), not for the second.
LONG_AGREED = ("What is the deadline for submitting my annual self assessment tax return online?",
               "By when do I have to file my yearly self assessment tax return on the internet?")
LONG_UNSURE = ("How do I contact your customer support team about a problem with my account settings?",
               "Who can I get in touch with when something in my account settings is not working right?")


@pytest.mark.anyio
async def test_long_questions_need_a_surer_second_opinion_and_a_stricter_header_closes_the_band(
        tmp_path, real_embedder, e5, opened) -> None:
    stored, asked = GREY_REWORDINGS[0]
    strict = request_terms(request(asked), POLICY, {"x-cache-threshold": "0.8"}, parse_cache_control(None)).policy
    assert strict.second_opinion_from == strict.long_second_opinion_from == 0.8  # never below what the client asked
    for long_stored, long_asked in (LONG_AGREED, LONG_UNSURE):
        similarity = cosine(real_embedder, long_stored, long_asked)
        assert len(long_asked) > POLICY.long_after
        assert POLICY.long_second_opinion_from <= similarity < POLICY.long_threshold, similarity
    assert cosine(e5, *LONG_AGREED) >= POLICY.long_second_opinion_threshold
    # e5 would vouch for this one at a short question's bar, not at a long one's.
    assert POLICY.second_opinion_threshold <= cosine(e5, *LONG_UNSURE) < POLICY.long_second_opinion_threshold
    async with opened(tmp_path, real_embedder, e5) as cache:
        await put(cache, stored)
        assert await served(cache, asked, strict) is None
        await put(cache, LONG_AGREED[0])
        await put(cache, LONG_UNSURE[0])
        assert await served(cache, LONG_AGREED[1]) == f"about {LONG_AGREED[0]}"
        assert await served(cache, LONG_UNSURE[1]) is None
        off = dataclasses.replace(POLICY, long_second_opinion_threshold=1.0)
        assert await served(cache, LONG_AGREED[1], off) is None  # 1: long questions keep long_threshold alone


@pytest.mark.anyio
async def test_a_lone_confident_hit_never_runs_the_second_model(tmp_path, real_embedder, e5, opened) -> None:
    counting = CountingE5(e5)
    async with opened(tmp_path, real_embedder, counting) as cache:
        await put(cache, "What is the capital of France?")
        await put(cache, "How do I reset my password?")
        before = counting.texts
        assert await served(cache, "What is the capital city of France?") == "about What is the capital of France?"
        assert counting.texts == before
        stored, asked = GREY_REWORDINGS[1]
        await put(cache, stored)
        before = counting.texts
        assert await served(cache, asked) == f"about {stored}"
        assert counting.texts == before + 2  # the question and its one grey candidate


@pytest.mark.anyio
async def test_near_tied_contenders_are_ranked_by_e5(tmp_path, real_embedder, e5, opened) -> None:
    asked = "How can I get my bank statements as a PDF document?"
    stored = NEAR_TIE
    minilm = [cosine(real_embedder, s, asked) for s in stored]
    assert all(s >= POLICY.threshold_for(asked) for s in minilm) and abs(minilm[0] - minilm[1]) < \
        POLICY.second_opinion_margin, minilm
    preferred = max(stored, key=lambda s: cosine(e5, s, asked))
    async with opened(tmp_path, real_embedder, e5) as cache:
        for text in stored:
            await put(cache, text)
        assert await served(cache, asked) == f"about {preferred}"
    off = dataclasses.replace(POLICY, second_opinion_margin=0.0)
    async with opened(tmp_path / "margin-off", real_embedder, e5) as cache:
        for text in stored:
            await put(cache, text)
        nearest = stored[int(np.argmax(minilm))]
        assert nearest != preferred  # the two models order them differently
        assert await served(cache, asked, off) == f"about {nearest}"  # MiniLM's order alone


@pytest.mark.anyio
async def test_a_tie_e5_cannot_break_is_a_miss(tmp_path, real_embedder, e5, opened) -> None:
    asked = "How can I get my bank statements as a PDF document?"
    stored = ["Where can I download my bank statements as PDF files?",
              "How do I save my bank statements as PDF documents?"]
    minilm = [cosine(real_embedder, s, asked) for s in stored]
    agreement = [cosine(e5, s, asked) for s in stored]
    assert abs(minilm[0] - minilm[1]) < POLICY.second_opinion_margin, minilm
    assert abs(agreement[0] - agreement[1]) < POLICY.second_opinion_tie, agreement
    async with opened(tmp_path, real_embedder, e5) as cache:
        for text in stored:
            await put(cache, text)
        found = await cache.lookup(request(asked), POLICY, None)
        assert found.hit is None and found.nearest is not None and found.nearest.reason == "tie"
        assert cache.matcher.rejections["tie"] == 2
    off = dataclasses.replace(POLICY, second_opinion_tie=0.0)
    async with opened(tmp_path / "tie-off", real_embedder, e5) as cache:
        for text in stored:
            await put(cache, text)
        assert await served(cache, asked, off) == f"about {max(stored, key=lambda s: cosine(e5, s, asked))}"


@pytest.mark.anyio
async def test_a_tie_the_question_words_break_is_served(tmp_path, real_embedder, e5, opened) -> None:
    asked = "Please tell me how to configure the API rate limit in Acme Desk."
    stored = ["How do I configure the API rate limit in Acme Desk?", "How do I enable the API rate limit in Acme Desk?"]
    agreement = [cosine(e5, s, asked) for s in stored]
    assert 0 < agreement[0] - agreement[1] < POLICY.second_opinion_tie, agreement
    async with opened(tmp_path, real_embedder, e5) as cache:
        for text in stored:
            await put(cache, text)
        assert await served(cache, asked) == f"about {stored[0]}"


@pytest.mark.anyio
async def test_one_question_stored_twice_is_no_tie(tmp_path, real_embedder, e5, opened) -> None:
    asked = "How can I get my bank statements as a PDF document?"
    stored = "How do I save my bank statements as PDF documents?"
    async with opened(tmp_path, real_embedder, e5) as cache:
        # Variety slots: one question, several entries (proxy/variety.py), as near to the question as each other.
        for slot in range(2):
            slotted = dataclasses.replace(request(stored), exact_key=slot_key(request(stored).exact_key, slot))
            cache.submit(slotted, POLICY, answer(f"answer {slot}"))
            await cache.drain()
        assert (await cache.lookup(request(asked), POLICY, None)).hit is not None


@pytest.mark.anyio
async def test_ranking_never_serves_a_contender_the_guard_rejected(tmp_path, real_embedder, e5, opened) -> None:
    asked = "Can I move money from my current account into my savings account in the app?"
    swapped = "Can I move money from my savings account into my current account in the app?"
    similar = "Can I move money from my current account to my savings account using the app?"
    assert find_conflict(swapped, asked, cosine(real_embedder, swapped, asked)) == "direction"
    assert cosine(e5, swapped, asked) > cosine(e5, similar, asked)  # e5 alone would pick the swapped one
    async with opened(tmp_path, real_embedder, e5) as cache:
        await put(cache, swapped)
        await put(cache, similar)
        assert await served(cache, asked) == f"about {similar}"


@pytest.mark.anyio
async def test_a_miss_guard_checks_only_the_nearest_grey_candidates(tmp_path, real_embedder, e5, opened,
                                                                   monkeypatch) -> None:
    strict = dataclasses.replace(POLICY, threshold=0.99)  # every rewording below falls in the grey band
    asked = "How do I reset my password?"
    stored = ["What should I do to reset my password?", "How do I reset my account password?",
              "I forgot my password, how do I reset it?", "Steps to reset a password"]
    similarities = [cosine(real_embedder, s, asked) for s in stored]
    assert all(strict.second_opinion_from <= s < strict.threshold for s in similarities), similarities
    checked: list[str] = []
    guard = lookup.rejection

    def counted(request, candidate, *args, **kwargs):
        checked.append(candidate.question)
        return guard(request, candidate, *args, **kwargs)

    async with opened(tmp_path, real_embedder, e5) as cache:
        for text in stored:
            await put(cache, text, strict)
        monkeypatch.setattr(lookup, "rejection", counted)
        await served(cache, asked, strict)
    assert len(checked) == lookup.GREY_CANDIDATES < len(stored)


@pytest.mark.anyio
async def test_a_repeated_near_tie_embeds_only_the_question_again(tmp_path, real_embedder, e5, opened) -> None:
    counting = CountingE5(e5)
    asked = "How can I get my bank statements as a PDF document?"
    async with opened(tmp_path, real_embedder, counting) as cache:
        for text in NEAR_TIE:
            await put(cache, text)
        before = counting.texts
        first = await served(cache, asked)
        assert first is not None
        assert counting.texts == before + 3  # the question and both contenders
        assert await served(cache, asked) == first
        assert counting.texts == before + 4  # the contenders' vectors were kept

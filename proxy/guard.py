"""The "never serve the wrong answer" guard: cheap lexical checks run on every cache candidate that passed cosine.

Cosine on sentence embeddings cannot see one-token edits ("open" vs "closed" scores ~0.95), so after the ANN
search the proxy asks `find_conflict(cached_question, incoming_question)`; any non-None answer means "miss".
The rules look only at what decides an answer and never at phrasing, so typos, filler and synonyms pass:

- "number":    numbers, times, dates, versions or identifiers differ ("2pm" vs "2am", "v3" vs "v4", 15% vs 50%)
- "calendar":  both name a day/month/part of the week and the names differ
- "negation":  one side is negated and the other is not (not, n't, never, no, without, non-/un-/dis- words)
- "polarity":  the sides take opposite poles of a generic antonym pair (open/closed, add/remove, before/after)
- "entity":    each side names a proper noun or known product/platform the other does not mention
- "direction": "A to B" on one side and "B to A" on the other (transfers, conversions, routes)
- "scope":     both name a member of the same closed class (audience, platform, tier, animal...) and they
               differ, or one side only adds a qualifier ("flu" vs "flu in babies", "can contractors…")
- "substitution": a minimal edit swapping one short span ("home insurance" vs "car insurance"), unless the swap
               is grammatical ("how do I" / "how can I"), a word form, a typo or a listed synonym

API:
    find_conflict(cached: str, incoming: str) -> str | None

Conversations are not this module's business: the proxy requires the same context (system prompt and earlier
turns) exactly, the only design that kept conversation traps near zero (bench/QUALITY.md).
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher
from functools import lru_cache
from typing import NamedTuple

from .guard_scripts import find_script_conflict, is_foreign

WORD_RE = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
CASED_WORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9&]*(?:[-'.][A-Za-z0-9&]+)*")
SENTENCE_ENDS = frozenset('.!?:;"(')
TIME_RE = re.compile(r"\b(\d{1,2})(?:[:.](\d{2}))?\s*(am|pm)\b")
CLOCK_RE = re.compile(r"\b(\d{1,2}):(\d{2})\b")
NUMBER_RE = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")
# Letters glued to digits that are only units or ordinals: "10gb", "3rd", "2x", "5k" carry the number alone.
UNIT_SUFFIXES = frozenset(
    "st nd rd th k m bn x s kg g mg lb lbs oz km mi ml l gb mb kb tb gbps mbps hz ghz mhz mm cm ft in yr yrs h hr "
    "hrs min mins sec secs p".split()
)
NEGATION_RE = re.compile(r"\b(?:not|no|never|none|nothing|nobody|nowhere|neither|nor|without|cannot)\b|n't\b")
NEGATING_PREFIXES = ("non-", "non", "un", "in", "im", "il", "ir", "dis")

# "one" is left out: "quick one", "this one" are not quantities.
WORD_NUMBERS = {
    w: float(v)
    for w, v in (
        pair.split("=")
        for pair in """zero=0 two=2 three=3 four=4 five=5 six=6 seven=7 eight=8 nine=9 ten=10 eleven=11 twelve=12
        thirteen=13 fourteen=14 fifteen=15 sixteen=16 seventeen=17 eighteen=18 nineteen=19 twenty=20 thirty=30
        forty=40 fifty=50 sixty=60 seventy=70 eighty=80 ninety=90 hundred=100 thousand=1000 million=1000000
        dozen=12 twice=2 double=2 triple=3 half=0.5 quarter=0.25""".split()
    )
}

# Day and month names and coarse parts of the calendar, each mapped to one canonical value.
CALENDAR = {
    **{d: d for d in "monday tuesday wednesday thursday friday saturday sunday weekday weekend".split()},
    **{m: m for m in "january february march april june july august september october november december".split()},
    **dict(
        pair.split("=")
        for pair in """mon=monday tue=tuesday tues=tuesday wed=wednesday thu=thursday thurs=thursday fri=friday
        sat=saturday sun=sunday jan=january feb=february sept=september oct=october nov=november dec=december
        aug=august today=today tonight=today same-day=today tomorrow=tomorrow next-day=tomorrow
        overnight=tomorrow yesterday=yesterday spring=spring summer=summer autumn=autumn fall=autumn
        winter=winter morning=morning afternoon=afternoon evening=evening christmas=christmas easter=easter
        daily=daily weekly=weekly monthly=monthly annual=yearly annually=yearly yearly=yearly
        quarterly=quarterly fortnightly=fortnightly""".split()
    ),
}

# Words whose presence or absence changes no answer: grammar, politeness, hedges.
STOPWORDS = frozenset(
    """a an the and or but if so of to in on at by for from with about as into onto over than then there here
    this that these those it its it's i i'm i've i'd me my mine myself we our ours us you your yours he she they
    them their his her is am are was were be been being do does did doing done have has had having can could
    would should will shall may might must what what's whats which who whom whose when where why how whether
    any some all each every much many more most very really just quite also too again still even only please
    thanks thank hi hello hey sorry bother quick question silly um er erm like okay ok well actually basically
    wondering wonder tell know let get got go going way best possible able need want wanted like would i'll
    there's is-it how's where's when's who's that's it'll one ones thing things something anything team there
    folks guys you're we're they're don't doesn't didn't isn't aren't wasn't can't won't cannot not no under
    above below within between through via after before during without per near off out up down across around
    non""".split()
)


@lru_cache(maxsize=65536)
def _singular(word: str) -> str:
    if word in STOPWORDS:
        return word
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


# Generic antonym poles; a side "takes" a pole when it uses a word of that pole and none of the other.
POLES = """
    open opens opened opening / close closes closed closing shut; include includes included including inclusive /
    exclude excludes excluded excluding exclusive; enable enables enabled enabling / disable disables disabled
    disabling; on / off; in into / out; before earlier prior / after later; min minimum lowest least fewest / max
    maximum highest most; increase increases increased increasing raise raised more bigger larger higher extend up
    grow / decrease decreases decreased decreasing reduce reduced reducing lower lowered less fewer smaller cut
    down; buy buys buying bought purchase / sell sells selling sold; add adds added adding put deposit / remove
    removes removed removing delete withdraw withdrawal; allow allows allowed permit permitted let legal / ban bans
    banned prohibit prohibited forbid forbidden; eat drink take use / avoid; accept accepts accepted approve
    approved approval / decline declined reject rejected refuse refused deny; join joining enrol enroll sign-up
    subscribe / leave leaving withdraw quit cancel unsubscribe; benefit benefits advantage advantages pro pros
    upside upsides / drawback drawbacks disadvantage disadvantages con cons downside downsides risk risks; best /
    worst; most popular / least unpopular; start starts started begin begins beginning / end ends ended finish
    finishes stop stops; first earliest / last latest final; upload uploads uploading import / download downloads
    downloading export; send sends sending sent / receive receives receiving received; win won winning / lose lost
    losing; pass passed / fail failed failing; cheap cheapest cheaper / expensive dear pricier; early / late; public
    / private hide hidden; hot warm / cold cool; spicy hot / mild; fast faster fastest quick quickest / slow slower
    slowest; working properly / fault faulty broken; credit / debit; upgrade / downgrade; lend lending / borrow
    borrowing; above over / below under; inside internal indoor / outside external outdoor; inbound incoming /
    outbound outgoing; encrypt / decrypt; push / pull; new / used second-hand; true / false; positive / negative;
    like likes love loves / hate hates dislike dislikes; safe / dangerous harmful
"""
POLE_SETS = [tuple(frozenset(map(_singular, side.split())) for side in pair.split("/")) for pair in POLES.split(";")]

# Closed classes: two sides naming different members of one class ask about different things.
CLOSED_CLASSES = {
    "audience": "student students staff employee employees contractor contractors freelancer freelancers adult "
    "adults child children kid kids baby babies toddler toddlers teen teens teenager teenagers senior seniors "
    "pensioner pensioners resident residents visitor visitors guest guests member members non-member "
    "non-members customer customers tenant tenants landlord landlords homeowner homeowners buyer buyers seller "
    "sellers parent parents partner colleague colleagues manager managers admin admins patient patients "
    "passenger passengers driver drivers man men woman women boy boys girl girls veteran veterans beginner "
    "beginners undergraduate undergraduates postgraduate postgraduates graduate graduates apprentice "
    "apprentices nonprofit nonprofits charity charities business businesses individual individuals couple "
    "couples family families spouse husband wife son daughter friend friends neighbour neighbors neighbour "
    "neighbours self-employed employed unemployed retired pregnant disabled full-time part-time home "
    "international domestic overseas local citizen citizens foreigner foreigners",
    "animal": "dog dogs puppy puppies cat cats kitten kittens rabbit rabbits horse horses bird birds fish hamster "
    "hamsters guinea parrot tortoise snake ferret",
    "food": "chicken beef pork lamb turkey duck fish salmon tuna prawn prawns tofu egg eggs rice pasta bread "
    "cheese milk vegetarian vegan",
    "platform": "iphone ipad android ios windows mac macos linux ubuntu chromebook chrome firefox safari edge "
    "desktop mobile web tablet laptop xbox playstation switch kindle pixel galaxy",
    "tier": "basic standard premium pro plus enterprise business economy starter family student free paid "
    "gold silver bronze platinum lite ultimate",
    "colour": "red blue green yellow orange purple pink black white grey gray brown amber silver gold",
    "meal": "breakfast brunch lunch dinner supper dessert starter",
    "premises": "flat apartment house bungalow office shop studio warehouse garage garden kitchen bathroom "
    "bedroom loft basement",
    "vehicle": "car van motorbike motorcycle bike bicycle bus coach train tram plane taxi lorry truck scooter",
    "tax-rate": "basic-rate higher-rate additional-rate starting-rate",
    "compass": "north south east west northern southern eastern western",
    "size": "small medium large xl xxl mini",
    "currency": "usd gbp eur jpy dollar dollars pound pounds euro euros yen sterling",
}
CLOSED_CLASS_SETS = {name: frozenset(_singular(w) for w in words.split()) for name, words in CLOSED_CLASSES.items()}
# Lowercase-capable names that are entities even when typed in lower case.
KNOWN_TERMS = frozenset(
    map(
        _singular,
        "iphone ipad android ios windows macos linux ubuntu python java javascript typescript rust golang kotlin "
        "swift ruby php perl scala react vue angular django flask node nodejs docker kubernetes aws azure gcp mysql "
        "postgres postgresql sqlite mongodb redis excel word powerpoint outlook gmail slack teams zoom whatsapp "
        "instagram facebook tiktok twitter linkedin youtube netflix spotify amazon ebay paypal visa mastercard".split(),
    )
)
# Capitalised words that are not names: sentence furniture and politeness.
NOT_NAMES = frozenset("i hi hello hey dear please thanks thank sorry ok okay yes no".split())
# Light verbs and question nouns: adding one ("request a copy" vs "get a copy") narrows nothing.
GENERIC_WORDS = frozenset(
    """request obtain receive stay remain time price cost much available calculate find check happen mean make
    give use able allowed legal percent cent exactly currently option way process procedure step details info
    information help possible okay fine sure""".split()
)
# Spelling variants and synonyms folded to one form before any comparison.
SYNONYMS = {
    "kid": "child",
    "children": "child",
    "men": "man",
    "women": "woman",
    "people": "person",
    "usd": "dollar",
    "gbp": "pound",
    "sterling": "pound",
    "eur": "euro",
    "overseas": "international",
    "colour": "color",
    "centre": "center",
    "programme": "program",
    "cancelled": "canceled",
    "enrol": "enroll",
}
# Synonyms common in support questions, for the substitution rule only (the other rules keep "receive" apart from
# "get" so that send/receive stays a polarity pair): swapping one for another asks the same thing.
SWAP_SYNONYMS = {
    word: group.split()[0]
    for group in """get receive obtain; start begin commence; change update amend modify edit; mute silence;
        create setup; order request; register enrol enroll signup; contact reach; repair fix; purchase buy;
        quote quotation estimate; challenge dispute contest; submit make file lodge; close shut; need require;
        find locate; show display; help assist; big large; small little""".split(";")
    for word in group.split()
}
# Words that change no answer when added or dropped: greetings, hedges, sign-offs.
FILLER_WORDS = frozenset("""hi hiya hey hello morning evening cheers thanks thank advance uh um erm er yeah so ok okay
    please quick question oh well anyway lol folks guys""".split())
# Auxiliaries, modals, pronouns, articles and question words: "how do I" and "how can I" ask the same thing.
GRAMMAR_WORDS = frozenset("""a an the do does did can could should would will shall may might must is are was were be
    been am i me my we our you your it its they them their what which who how when where why that this these those
    there have has had to go get""".split())
CONTRACTIONS = (("can't", "can not"), ("cannot", "can not"), ("won't", "will not"), ("n't", " not"), ("'re", " are"),
                ("'ve", " have"), ("'ll", " will"), ("'d", " would"), ("'m", " am"), ("what's", "what is"),
                ("it's", "it is"), ("there's", "there is"))
# Prepositions that open a qualifying phrase: "symptoms of flu in babies", "deadline for students".
PERSONAL_PRONOUNS = frozenset("i me my we us our".split())
NUMERIC_RE = re.compile(r"\d")
QUALIFYING_PREPOSITIONS = frozenset("in for on at with without during under over from by near outside inside abroad "
                                    "within after before between".split())
PHRASES_RE = re.compile(r"\btwo[- ]factor\b|\b2-factor\b")
# Words that make "A to B" a direction rather than a purpose ("from A to B", "convert A to B").
DIRECTION_CUES = frozenset(
    "from convert transfer move translate switch migrate send travel fly drive ticket route journey port".split()
)


class Features(NamedTuple):
    words: frozenset[str]
    content: frozenset[str]
    numbers: frozenset[str]
    calendar: frozenset[str]
    negated: bool
    entities: frozenset[str]
    arrows: frozenset[tuple[str, str]]


def _numbers(lower: str) -> tuple[frozenset[str], str]:
    """Canonical numeric values in `lower`, plus the text with times removed (so "7pm" is not also "7")."""
    found: set[str] = set()

    def time_repl(m: re.Match[str]) -> str:
        hour = int(m.group(1)) % 12 + (12 if m.group(3) == "pm" else 0)
        found.add(f"{hour}:{m.group(2) or '00'}")
        return " "

    lower = TIME_RE.sub(time_repl, lower)
    def clock_repl(m: re.Match[str]) -> str:
        found.add(f"{int(m.group(1))}:{m.group(2)}")
        return " "

    lower = CLOCK_RE.sub(clock_repl, lower)
    for token in re.findall(r"[a-z0-9.,]*\d[a-z0-9.,]*", lower):
        token = token.strip(".,")
        head = NUMBER_RE.match(token)
        rest = token[head.end() :] if head else token
        if head and (not rest or rest in UNIT_SUFFIXES):
            value = float(head.group().replace(",", ""))
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


def _entities(text: str) -> frozenset[str]:
    """Capitalised words that are not sentence-initial, plus known product/platform names in any case."""
    letters = [c for c in text if c.isalpha()]
    uppers = sum(c.isupper() for c in letters)
    shouting = letters and uppers > 0.8 * len(letters)
    names = set()
    words = list(CASED_WORD_RE.finditer(text))
    title_case = words and sum(w.group()[0].isupper() for w in words) > 0.6 * len(words) and len(words) > 3
    for m in words:
        word = m.group()
        parts = {SYNONYMS.get(p, p) for p in map(_singular, WORD_RE.findall(word.lower()))}
        if parts & KNOWN_TERMS:
            names.update(parts & KNOWN_TERMS)
            continue
        if shouting or title_case or not word[0].isupper() or word.lower() in NOT_NAMES:
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
        pairs.update((u, v) for u in before for v in after)
    return frozenset(pairs)


@lru_cache(maxsize=8192)
def features(text: str) -> Features:
    lower = PHRASES_RE.sub("2fa", text.lower().replace("\u2019", "'"))
    numbers, stripped = _numbers(lower)
    tokens = [SYNONYMS.get(t, t) for t in map(_singular, (SYNONYMS.get(w, w) for w in WORD_RE.findall(stripped)))]
    words = frozenset(tokens)
    parts = [_singular(p) for t in tokens for p in t.split("-")]  # "check-in" and "check in" compare equal
    content = frozenset(t for t in parts if t not in STOPWORDS and not t[0].isdigit() and t not in WORD_NUMBERS)
    calendar = frozenset(CALENDAR[t] for t in tokens if t in CALENDAR)
    negated = bool(NEGATION_RE.search(lower))
    return Features(words, content, numbers, calendar, negated, _entities(text.replace("\u2019", "'")), _arrows(tokens))


def _negating_prefix(a: frozenset[str], b: frozenset[str]) -> bool:
    """ "safe" vs "unsafe", "lock" vs "unlock", "transferable" vs "non-transferable"."""
    for word in b - a:
        for prefix in NEGATING_PREFIXES:
            if word.startswith(prefix) and len(word) - len(prefix) >= 3 and word[len(prefix) :] in a:
                return True
    return False


def _takes_pole(words: frozenset[str], pole: frozenset[str], other: frozenset[str]) -> bool:
    return bool(words & pole) and not words & other


def _close(word: str, name: str) -> bool:
    matcher = SequenceMatcher(None, word, name)
    return matcher.real_quick_ratio() >= 0.8 and matcher.quick_ratio() >= 0.8 and matcher.ratio() >= 0.8


def _mentions(name: str, words: frozenset[str]) -> bool:
    """`name` or a typo of it (one slip in five letters) occurs among `words`."""
    if name in words:
        return True
    return len(name) >= 5 and any(w[0] == name[0] and abs(len(w) - len(name)) <= 2 and _close(w, name) for w in words)


def _one_sided_names(a: Features, b: Features) -> bool:
    return any(not _mentions(e, b.words) for e in a.entities)


def find_conflict(cached: str, incoming: str) -> str | None:
    """Name of the first rule saying the two questions need different answers, or None if none does."""
    if cached == incoming:
        return None
    if is_foreign(cached) or is_foreign(incoming):
        return find_script_conflict(cached, incoming)  # the rules below read English words only
    a, b = features(cached), features(incoming)
    if a.numbers != b.numbers:
        return "number"
    if a.calendar and b.calendar and a.calendar != b.calendar:
        return "calendar"
    # Parity: "non-members" vs "not a member" flips twice and agrees.
    if a.negated ^ b.negated ^ _negating_prefix(a.words, b.words) ^ _negating_prefix(b.words, a.words):
        return "negation"
    for left, right in POLE_SETS:
        if (_takes_pole(a.words, left, right) and _takes_pole(b.words, right, left)) or (
            _takes_pole(a.words, right, left) and _takes_pole(b.words, left, right)
        ):
            return "polarity"
    if _one_sided_names(a, b) and _one_sided_names(b, a):
        return "entity"
    if any((v, u) in b.arrows for u, v in a.arrows):
        return "direction"
    for members in CLOSED_CLASS_SETS.values():
        ma, mb = a.words & members, b.words & members
        if ma - mb and mb - ma:
            return "scope"
    small, big = sorted((a.content, b.content), key=len)
    if small < big and big - small - GENERIC_WORDS and _adds_qualifier(cached, incoming):
        return "scope"  # one side only adds qualifiers: "symptoms of flu" vs "symptoms of flu in babies"
    return _substitution(cached, incoming)


@lru_cache(maxsize=8192)
def _tokens(text: str) -> tuple[str, ...]:
    """Lowercase words with contractions spelt out and grammatical filler dropped, for sequence diffs."""
    lower = text.lower().replace("\u2019", "'")
    for short, long in CONTRACTIONS:
        lower = lower.replace(short, long)
    # Numbers and times are the number rule's business: here they would only look like swapped words.
    words = (SYNONYMS.get(_singular(w), _singular(w)) for w in WORD_RE.findall(lower)
             if w not in FILLER_WORDS and w not in WORD_NUMBERS and w not in ("am", "pm") and not NUMERIC_RE.search(w))
    return tuple(SWAP_SYNONYMS.get(w, w) for w in words)


Tokens = tuple[str, ...]


@lru_cache(maxsize=4096)  # both the scope and the substitution rule read the same pair's diff
def _diff(cached: str, incoming: str) -> tuple[Tokens, Tokens, tuple[tuple[str, Tokens, Tokens], ...]]:
    ta, tb = _tokens(cached), _tokens(incoming)
    ops = SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes()
    return ta, tb, tuple((tag, ta[i1:i2], tb[j1:j2]) for tag, i1, i2, j1, j2 in ops if tag != "equal")


def _adds_qualifier(cached: str, incoming: str) -> bool:
    """One side inserts a prepositional phrase ("flu" vs "flu in babies") or a member of a closed class
    (audience, platform, tier…) the other lacks; a bare added noun ("capital" vs "capital city") narrows nothing."""
    _, _, changes = _diff(cached, incoming)
    for _, left, right in changes:
        # Someone else in place of "I"/"my": the question is about another person's case.
        if (PERSONAL_PRONOUNS & set(left) and any(w not in GRAMMAR_WORDS for w in right)) or (
                PERSONAL_PRONOUNS & set(right) and any(w not in GRAMMAR_WORDS for w in left)):
            return True
        # A span that replaces only grammatical words ("I" -> "contractors") adds as much as an insertion does.
        if all(w in GRAMMAR_WORDS for w in left):
            added = right
        elif all(w in GRAMMAR_WORDS for w in right):
            added = left
        else:
            continue
        if len(added) > 1 and added[0] in QUALIFYING_PREPOSITIONS:
            return True
        if any(_singular(w) in members for w in added for members in CLOSED_CLASS_SETS.values()):
            return True  # "can I work from home" vs "can contractors work from home"
    return False


def _variant(x: str, y: str) -> bool:
    """The same word in another form or with a slip: "quote"/"quotation", "recieve"/"receive"."""
    if _singular(x) == _singular(y) or _stem(x) == _stem(y):
        return True
    if min(len(x), len(y)) >= 4 and (x.startswith(y) or y.startswith(x)):
        return True
    return x[0] == y[0] and SequenceMatcher(None, x, y).ratio() >= 0.8


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s", "er", "ly", "ation", "ment"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _substitution(cached: str, incoming: str) -> str | None:
    """A minimal edit that swaps one short span for another ("home insurance" vs "car insurance", "within" vs
    "after"): the texts agree on everything else, so the swapped words are what the question is about. Swaps of
    grammatical words, word forms, typos and listed synonyms are not differences."""
    ta, tb, changes = _diff(cached, incoming)
    if len(changes) != 1 or changes[0][0] != "replace":
        return None
    _, left, right = changes[0]
    if len(left) > 2 or len(right) > 2 or len(ta) - len(left) < 2:
        return None
    left = tuple(w for w in left if w not in GRAMMAR_WORDS)
    right = tuple(w for w in right if w not in GRAMMAR_WORDS)
    if not left or not right:
        return None
    if len(left) == len(right) and all(_variant(x, y) for x, y in zip(left, right, strict=True)):
        return None
    if "".join(left) == "".join(right):  # "sign up" vs "signup"
        return None
    return "substitution"

"""The guard's rules: each a function of one candidate pair that says True when the two questions need different
answers. `RULES` lists them in the order they run; the first that fires names the rejection."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from difflib import SequenceMatcher
from functools import cached_property, lru_cache

from .features import MAX_ROLE_TOKENS, Features, Tokens, diff, edits, features, lowered, tokens
from .lexicon import (
    ACTION_STAGES,
    ADVERBS,
    CLAUSE_OPENERS,
    CLOSED_CLASS_SETS,
    ENDING_WORDS,
    FILLER_WORDS,
    GENERIC_WORDS,
    GRAMMAR_WORDS,
    NEGATING_PREFIXES,
    PARTY_WORDS,
    PEOPLE,
    PERSONAL_PRONOUNS,
    POLE_SETS,
    QUALIFYING_PREPOSITIONS,
    RESTATING_HEADS,
    STOPWORDS,
    WORDNET,
    singular,
    wordnet_antonyms,
    wordnet_synonyms,
)

# A one-span swap the default model (all-MiniLM-L6-v2) scores this close says the same thing in other words:
# synonyms in context score >= 0.91 ("street"/"road" 0.97, "set up"/"create" 0.95, "register"/"sign up" 0.92),
# swapped things <= 0.87 ("lost"/"stolen card" 0.87, "home"/"car insurance" 0.81, "boat"/"fishing licence").
SWAP_SIMILARITY = 0.90
# A procedure's answer says where to go or whom to tell: "How do I report a pothole?" / "Who do I tell?".
# A yes or no answers "Can I…", "Am I eligible…", "Do I need…" too, and says where or who ("Is there a pharmacy
# near me?" / "Where is the nearest pharmacy?"); not when, how much, how long or why.
COMPATIBLE_ASKS = frozenset(
    pair for x, y in (("procedure", "place"), ("procedure", "person"), ("yes-no", "procedure"),
                      ("yes-no", "eligibility"), ("yes-no", "requirement"), ("yes-no", "place"), ("yes-no", "person"))
    for pair in ((x, y), (y, x)))
INFLECTIONS = frozenset({"ing", "ed", "es", "s", "er", "ers"})
# Share of tokens two texts must have in common for frame_swap to read them as one frame with swapped words.
FRAME_SHARE = 0.5
ARTICLES = frozenset({"a", "an", "the"})
# Words between a thing and the "already" that gives its state: "an order that has already", "my phone is already".
STATE_LINKS = frozenset("that which that's it's is are was were has have had been it they".split())
# Longest run of words the modifier rule reads as one qualifier of a head noun.
MODIFIER_WORDS = 3
# Prepositions of place English swaps freely ("on the train" / "in the train", "at the weekend" / "on the weekend").
LOCATIVES = frozenset({"in", "on", "at"})


@dataclass(frozen=True)
class Pair:
    """A cached question and the incoming one, with their features computed once."""

    cached: str
    incoming: str
    similarity: float | None = None  # the embeddings' cosine, when the caller has it

    @cached_property
    def a(self) -> Features:
        return features(self.cached)

    @cached_property
    def b(self) -> Features:
        return features(self.incoming)


Rule = Callable[[Pair], bool]
# The second pole of each pair (closed, exclude, remove, stop…): a word swapped for one of these may be its opposite.
SECOND_POLE_WORDS = frozenset(word for pair in POLE_SETS for word in pair[-1])


def number(p: Pair) -> bool:
    """Numbers, times, dates, versions or identifiers differ ("2pm" vs "2am", "v3" vs "v4", 15% vs 50%)."""
    return p.a.numbers != p.b.numbers


def calendar(p: Pair) -> bool:
    """Both name a day, month or part of the week and the names differ."""
    return bool(p.a.calendar and p.b.calendar and p.a.calendar != p.b.calendar)


def asks(p: Pair) -> bool:
    """The two want different kinds of answer: "What time does the pharmacy open?" (a time) vs "Where is the nearest
    pharmacy?" (a place), "Why is my bill so high?" vs "When is my bill due?", "How do I get a refund?" (a procedure)
    vs "How long does a refund take?". Questions without such a word ("Is parking free?") ask for no kind in
    particular."""
    return bool(p.a.asks and p.b.asks and not any(x == y or (x, y) in COMPATIBLE_ASKS
                                                    for x in p.a.asks for y in p.b.asks))


def action(p: Pair) -> bool:
    """Both name a thing and do something else to it: "How do I join a gym?" (start) vs "How do I freeze my gym
    membership?" (end), "install Python" vs "check which version of Python I have" (look). Verbs of one stage
    ("register" / "sign up", "change" / "update") pass, and so does a side that names no stage."""
    if not (p.a.actions and p.b.actions) or p.a.actions & p.b.actions:
        return False
    return bool({w for w in p.a.content if w not in ACTION_STAGES} & {w for w in p.b.content if w not in ACTION_STAGES})


def part(p: Pair) -> bool:
    """One side asks about a part of what the other names whole: "How do I back up my entire phone?" / "…only
    the photos on my phone?", "delete my Facebook account" / "delete a single post on Facebook"."""
    if bool(p.a.parts) == bool(p.b.parts):
        return False
    named, other = (p.a.parts, p.b) if p.a.parts else (p.b.parts, p.a)
    # The part must be new: "an array into a single string in JS" / "join an array into a string" is one string.
    return bool(named - other.words - other.content) and bool(p.a.content & p.b.content)


def ordinal(p: Pair) -> bool:
    """Both sides count in order and the positions differ: "my first home" vs "a second property"."""
    return bool(p.a.ordinals and p.b.ordinals and p.a.ordinals != p.b.ordinals)


def _negating_prefix(a: frozenset[str], b: frozenset[str]) -> bool:
    """ "safe" vs "unsafe", "lock" vs "unlock", "transferable" vs "non-transferable"."""
    for word in b - a:
        for prefix in NEGATING_PREFIXES:
            # A hyphen marks the prefix however short the word: "non-UK".
            if word.startswith(prefix) and len(word) - len(prefix) >= (2 if prefix.endswith("-") else 3) \
                    and word[len(prefix) :] in a:
                return True
    return False


def _states_a_problem(negated: Features, other: Features) -> bool:
    """ "I can't remember my password" asks what "how do I reset my password" asks: every negation is an
    inability whose verb the other side never uses (so "which can't I claim" vs "which can I claim" still differ)."""
    return bool(negated.inabilities) and not any(_mentions(v, other.words) for v in negated.inabilities or ())


def _ends_instead(negated: Features, other: Features) -> bool:
    """ "stop my direct debit" asks what "cancel my direct debit" asks: the stopping verb stands for an ending verb
    (cancel, unsubscribe, disable…) the other side uses and it does not ("stop the app closing" vs "close the app"
    still differ)."""
    return negated.halts and any(w in ENDING_WORDS and not any(_root(w) == _root(x) for x in negated.words)
                                 for w in other.words)


def _root(word: str) -> str:
    """ "closing", "closed", "closes" and "close" share "clos"."""
    return _stem(word).removesuffix("e")


def negation(p: Pair) -> bool:
    """One side is negated and the other is not (not, n't, never, no, without, non-/un-/dis- words)."""
    a, b = p.a, p.b
    prefixed = _negating_prefix(a.words, b.words) ^ _negating_prefix(b.words, a.words)
    if not prefixed and a.negated != b.negated:
        negated, other = (a, b) if a.negated else (b, a)
        return not (_states_a_problem(negated, other) or _ends_instead(negated, other))
    # Parity: "non-members" vs "not a member" flips twice and agrees.
    return bool(a.negated ^ b.negated ^ prefixed)


def _pole_sides() -> dict[str, list[tuple[int, int]]]:
    """Each pole word to the (antonym pair, side) it is on: a text's poles cost a lookup per word, not a pass per
    pair."""
    out: dict[str, list[tuple[int, int]]] = {}
    for pair, (left, right) in enumerate(POLE_SETS):
        for side, words in enumerate((left, right)):
            for word in words:
                out.setdefault(word, []).append((pair, side))
    return out


POLE_SIDES = _pole_sides()


@lru_cache(maxsize=8192)
def _poles(words: frozenset[str]) -> frozenset[tuple[int, int]]:
    """The (antonym pair, side) a text takes: a word of that side and none of the other."""
    sides: dict[int, set[int]] = {}
    for word in words:
        for pair, side in POLE_SIDES.get(word, ()):
            sides.setdefault(pair, set()).add(side)
    return frozenset((pair, taken.pop()) for pair, taken in sides.items() if len(taken) == 1)


def polarity(p: Pair) -> bool:
    """The sides take opposite poles of a generic antonym pair (open/closed, add/remove, before/after)."""
    b = _poles(p.b.words)
    return any((pair, 1 - side) in b for pair, side in _poles(p.a.words))


def _close(word: str, name: str) -> bool:
    matcher = SequenceMatcher(None, word, name)
    return matcher.real_quick_ratio() >= 0.8 and matcher.quick_ratio() >= 0.8 and matcher.ratio() >= 0.8


def _mentions(name: str, words: frozenset[str]) -> bool:
    """`name` or a typo of it (one slip in five letters) occurs among `words`."""
    if name in words:
        return True
    # One letter more or less in a short word is a slip; two ("Austria"/"Australia") make another word.
    return len(name) >= 5 and any(w[0] == name[0] and abs(len(w) - len(name)) <= _slack(w, name) and _close(w, name)
                                  for w in words)


def _slack(word: str, name: str) -> int:
    return 1 if min(len(word), len(name)) < 9 else 2


def _spelt_out(name: str, words: frozenset[str], sequence: Tokens) -> bool:
    """ "ML" is "machine learning" (its initials in a row on the other side), "IterableDataset" is "Dataset that
    is Iterable" (two of the other side's words run together), "Preprocess" is "preprocessing"."""
    run = len(name)
    if 2 <= run <= 5 and any("".join(w[0] for w in sequence[i : i + run]) == name
                             and not STOPWORDS.intersection(sequence[i : i + run])
                             for i in range(len(sequence) - run + 1)):
        return True
    if any(name[:i] in words and name[i:] in words for i in range(3, len(name) - 2)):
        return True
    return len(name) >= 5 and any(_inflected(w, name) or _inflected(name, w) for w in words)


def _inflected(word: str, base: str) -> bool:
    """ "Preprocessing" of "Preprocess"."""
    return word.startswith(base) and word[len(base) :] in INFLECTIONS


def _one_sided_names(a: Features, b: Features, b_tokens: Tokens) -> bool:
    return any(not _mentions(e, b.words) and not _spelt_out(e, b.words, b_tokens) for e in a.entities)


def entity(p: Pair) -> bool:
    """Each side names a proper noun or known product/platform the other does not mention."""
    ta, tb = tokens(p.cached), tokens(p.incoming)
    return _one_sided_names(p.a, p.b, tb) and _one_sided_names(p.b, p.a, ta)


def direction(p: Pair) -> bool:
    """ "A to B" on one side and "B to A" on the other (transfers, conversions, routes)."""
    return any((v, u) in p.b.arrows for u, v in p.a.arrows)


def parties(p: Pair) -> bool:
    """A party or place is the source on one side and the target on the other: "leave British Gas for Octopus"
    vs "move from Octopus to British Gas", "from my Premium Bonds into my bank" vs "my bank into Premium Bonds"."""
    def single(roles: frozenset[tuple[str, str]]) -> dict[str, str]:
        # A word that is source and target on one side ("from my current account to my savings account") is
        # no party: only the words around it are.
        both = {w for w, r in roles if (w, "source" if r == "target" else "target") in roles}
        return {w: r for w, r in roles if w not in both}
    roles_b = single(p.b.roles)
    return any(roles_b.get(word, role) != role for word, role in single(p.a.roles).items())


def _only_pronoun(span: Tokens) -> bool:
    """A personal pronoun among grammatical words ("my", "can I"), not in a question's opening ("How do I")."""
    words = set(span)
    return bool(PERSONAL_PRONOUNS & words) and not QUESTION_WORDS & words \
        and all(w in GRAMMAR_WORDS or w in PERSONAL_PRONOUNS for w in span)


AUDIENCE = CLOSED_CLASS_SETS["audience"]
QUESTION_WORDS = frozenset("how what where when why which who".split())
AUXILIARIES = frozenset("can could do does did is are will would should may must am".split())
DETERMINERS = ARTICLES | {"my", "our"}


def _subject(text: str) -> str | None:
    """Who acts in a question that opens with an auxiliary: "i" ("Can I…", "How do I…"), or a party after a
    determiner ("Can my employer…": "employer"; not "Does the Pixel…", a thing)."""
    seq = tokens(text)
    at = next((i for i, t in enumerate(seq[:3]) if t in AUXILIARIES), None)
    if at is None or at + 1 >= len(seq):
        return None
    word = seq[at + 1]
    if word in ("i", "we"):
        return "i"
    if word in DETERMINERS and at + 2 < len(seq) and (seq[at + 2] in PARTY_WORDS or seq[at + 2] in AUDIENCE):
        return _root(seq[at + 2])
    return None


CLAUSE_SPLIT_RE = re.compile(r"[,.;:?!]|\b(?:if|when|whenever|after|before|because|while|unless|but)\b")
SPEAKER_TOKENS = frozenset({"i", "me"})


def _party_clauses(cached: str, incoming: str) -> tuple[str, str] | None:
    """The one clause on each side that names both the speaker and a party both sides name, when at least one of
    them is less than its whole question; else None."""
    def clauses(text: str) -> list[tuple[str, set[str]]]:
        parts = [c.strip() for c in CLAUSE_SPLIT_RE.split(lowered(text))]
        return [(c, {_root(t) for t in tokens(c) if t in PARTY_WORDS or t in AUDIENCE}) for c in parts
                if c and SPEAKER_TOKENS.intersection(tokens(c))]
    ca, cb = clauses(cached), clauses(incoming)
    parties = set().union(*(roots for _, roots in ca)) & set().union(*(roots for _, roots in cb))
    if len(parties) != 1:
        return None
    party = parties.pop()
    with_a = [c for c, roots in ca if party in roots]
    with_b = [c for c, roots in cb if party in roots]
    if len(with_a) != 1 or len(with_b) != 1:
        return None
    whole_a, whole_b = cached.lower().strip(" ?.!"), incoming.lower().strip(" ?.!")
    if with_a[0] == whole_a and with_b[0] == whole_b:
        return None
    return with_a[0], with_b[0]


def persons(p: Pair) -> bool:
    """The speaker and another party trade places in the same words: "Can I claim compensation from my landlord?"
    / "Can my landlord claim compensation from me?", "my employer owes me" / "I owe my employer"."""
    def speaker(words: frozenset[str]) -> str | None:
        subject, object_ = "i" in words, "me" in words
        return "subject" if subject and not object_ else "object" if object_ and not subject else None

    def before_speaker(text: str) -> set[str]:
        seq = tokens(text)
        at = next((i for i, t in enumerate(seq) if t in ("i", "me")), len(seq))
        return {_root(t) for t in seq[:at] if t not in STOPWORDS and t not in GRAMMAR_WORDS}
    def between(text: str, party: str) -> set[str]:
        """The content roots between the speaker and the party's first mention."""
        seq = tokens(text)
        speaker_at = next((i for i, t in enumerate(seq) if t in ("i", "me")), None)
        party_at = next((i for i, t in enumerate(seq) if _root(t) == party), None)
        if speaker_at is None or party_at is None:
            return set()
        lo, hi = sorted((speaker_at, party_at))
        return {_root(t) for t in seq[lo + 1:hi] if t not in STOPWORDS and t not in GRAMMAR_WORDS}
    shared, roots_b = {_root(w) for w in p.a.content}, {_root(w) for w in p.b.content}
    # "Can my employer reduce my hours…" / "Can I reduce my hours… my employer's…": the same parties, the other acts.
    sa, sb = _subject(p.cached), _subject(p.incoming)
    party = sb if sa == "i" else sa
    if sa and sb and sa != sb and "i" in (sa, sb) and party in shared and party in roots_b:
        return True
    a, b = speaker(p.a.words), speaker(p.b.words)
    if a is None or b is None or a == b:
        # "What should I do if my employer owes me money…" / "…if I owe my employer money…": the clause naming the
        # party says who acts, where the whole question names the speaker both ways.
        clauses = _party_clauses(p.cached, p.incoming)
        return clauses is not None and persons(Pair(*clauses))
    # The other party moves across the speaker ("my landlord … me"); "tell me how to reset it" moves nothing.
    moved = (before_speaker(p.cached) ^ before_speaker(p.incoming)) & shared & roots_b
    if shared == roots_b:
        return bool(moved)
    # Other words too: the same verb must link the two in both ("I report my neighbour" / "my neighbour reported
    # me"), not "Can my boss make me work…" / "Do I have to work… if my boss asks?".
    return any(between(p.cached, party) & between(p.incoming, party) for party in moved)


POSSESSIVES = ("my", "our", "your", "his", "her", "their")
SPEAKERS_OWN = ("my", "our")
THEIRS_RE = re.compile(r"\b([a-z]+)'s\s+([a-z]+)")
CLAUSE_START_RE = re.compile(r"(?:^|[.,;:!?])\s*$")
OWNED_RE = re.compile(rf"\b({'|'.join(POSSESSIVES)})\s+([a-z]+)\b(?!')")


@lru_cache(maxsize=4096)
def _possessions(text: str) -> tuple[frozenset[str], frozenset[tuple[str, str]], frozenset[str]]:
    """The people a text names as someone's ("my partner", "our son's"), what belongs to one of them ("partner's
    car": ("partner", "car")) and what belongs to the speaker ("my car": "car"), singular."""
    lower = lowered(text)
    theirs = {(singular(m.group(1)), singular(m.group(2))) for m in THEIRS_RE.finditer(lower)
              if singular(m.group(1)) in PEOPLE}
    people, mine = {owner for owner, _ in theirs}, set()
    for m in OWNED_RE.finditer(lower):
        word = singular(m.group(2))
        if word in PEOPLE:
            # "My son has a nut allergy, can the kitchen…": a clause's subject tells the story, the case stays.
            if not CLAUSE_START_RE.search(lower[:m.start()]):
                people.add(word)
        elif m.group(1) in SPEAKERS_OWN:  # "their first passport" may be the child's
            mine.add(word)
    return frozenset(people), frozenset(theirs), frozenset(mine)


# "As a carer, …" opens a clause; "such as a child" names an example, not the speaker.
SPEAKER_IS_RE = re.compile(r"(?:\b(?:i'm|i\s+am)|(?:^|[,.;:!?])\s*as)\s+(?:an?\s+)?([a-z]+)")


@lru_cache(maxsize=4096)
def _identities(text: str) -> frozenset[str]:
    """The people the speaker says they are: "I'm a passenger", "as a carer" (words.yaml people), singular."""
    lower = lowered(text)
    return frozenset(w for m in SPEAKER_IS_RE.finditer(lower) if (w := singular(m.group(1))) in PEOPLE)


def someone(p: Pair) -> bool:
    """One side is about another person's case: the other names nobody ("How do I see my medical records?" /
    "…my child's medical records?", "How do I register with a GP?" / "How do I register my newborn with a GP?"), or
    has the same thing as the speaker's ("on my car insurance" / "on my partner's car insurance")."""
    (pa, theirs_a, mine_a), (pb, theirs_b, mine_b) = _possessions(p.cached), _possessions(p.incoming)
    if any(thing in mine_b and (owner, thing) not in theirs_b for owner, thing in theirs_a) or any(
            thing in mine_a and (owner, thing) not in theirs_a for owner, thing in theirs_b):
        return True
    # "my passenger isn't wearing a seatbelt" / "I'm a passenger not wearing a seatbelt": the speaker is that person.
    ia, ib = _identities(p.cached), _identities(p.incoming)
    if (pa & ib) - ia or (pb & ia) - ib:
        return True
    if bool(pa) == bool(pb):
        return False
    named, other = (pa, p.b.words) if pa else (pb, p.a.words)
    # Nobody else on the other side, not even the same person misspelt ("my chlid").
    return not any(singular(w) in PEOPLE or singular(w) in AUDIENCE or any(_variant(w, n) for n in named)
                   for w in other) and bool(p.a.content & p.b.content)


def _opens_qualifier(word: str) -> bool:
    return word in QUALIFYING_PREPOSITIONS or word in CLAUSE_OPENERS


def _adds_qualifier(changes: tuple[tuple[str, Tokens, Tokens], ...], ta: Tokens, tb: Tokens) -> bool:
    """One side inserts a prepositional phrase ("flu" vs "flu in babies") or a member of a closed class
    (audience, platform, tier…) the other lacks; a bare added noun ("capital" vs "capital city") narrows nothing,
    nor does a phrase whose words the other side says elsewhere ("flu in babies" vs "my baby has the flu")."""
    for _, left, right in changes:
        # Someone else in place of "I"/"my": the question is about another person's case. Not when the pronoun
        # comes with a verb of its own ("What's included" / "What do I get with") or in the question's opening
        # ("How do I" / "What's the easiest way to"): the sentence was recast.
        if (_only_pronoun(left) and any(w not in GRAMMAR_WORDS for w in right)) or (
                _only_pronoun(right) and any(w not in GRAMMAR_WORDS for w in left)):
            return True
        # A span that replaces only grammatical words ("I" -> "contractors") adds as much as an insertion does.
        if all(w in GRAMMAR_WORDS for w in left):
            added = right
        elif all(w in GRAMMAR_WORDS for w in right):
            added = left
        else:
            continue
        elsewhere = set(tb if added is left else ta)
        if all(w in GRAMMAR_WORDS or w in QUALIFYING_PREPOSITIONS or w in elsewhere for w in added):
            continue
        # A phrase or a clause, or an adverb then one: "…in babies", "…if I left the keys in it", "…already in
        # the EU".
        if len(added) > 1 and (_opens_qualifier(added[0]) or (
                len(added) > 2 and added[0] in ADVERBS and _opens_qualifier(added[1]))):
            return True
        if any(singular(w) in members and w not in elsewhere for w in added for members in CLOSED_CLASS_SETS.values()):
            return True  # "can I work from home" vs "can contractors work from home" (not "flu in babies")
    return False


def _already(p: Pair) -> bool:
    """One side says that the thing both name has already changed state: "cancel my order" / "cancel an order
    that's already been dispatched", "unlock my phone" / "tell if my phone is already unlocked". Not the speaker's
    own story ("I've already booked my flight, can I upgrade my seat?")."""
    if ("already" in p.a.words) == ("already" in p.b.words):
        return False
    text, other = (p.cached, p.b) if "already" in p.a.words else (p.incoming, p.a)
    seq = tokens(text)
    # A statement or a long text narrates: "…, and scalability is already built in."
    if len(seq) > MAX_ROLE_TOKENS or not ("?" in text or seq[0] in QUESTION_WORDS or seq[0] in AUXILIARIES):
        return False
    at = seq.index("already")
    while at > 0 and seq[at - 1] in STATE_LINKS:
        at -= 1
    # A thing, not a verb: "storing already processed data" says what is stored.
    return at > 0 and not seq[at - 1].endswith("ing") and singular(seq[at - 1]) in other.content


def _recast_opening_nouns(ta: Tokens, tb: Tokens, ops: tuple[tuple[str, int, int, int, int], ...]) -> set[str]:
    """The question nouns of an opening one side recasts ("What's the process to renew…" / "How do I renew…"):
    they are no content of what is asked."""
    if not ops or ops[0][1] != 0 or ops[0][3] != 0:
        return set()
    left, right = ta[: ops[0][2]], tb[: ops[0][4]]
    if not (QUESTION_WORDS & set(left) and QUESTION_WORDS & set(right)) or not all(
            w in GRAMMAR_WORDS or w in STOPWORDS or w in GENERIC_WORDS for w in left + right):
        return set()
    return set(left + right) & GENERIC_WORDS


def scope(p: Pair) -> bool:
    """Both name a member of the same closed class (audience, platform, tier, animal…) and they differ, one side
    gives the state the thing is already in, or one side only adds a qualifier ("flu" vs "flu in babies", "can
    contractors…")."""
    for members in CLOSED_CLASS_SETS.values():
        ma, mb = p.a.words & members, p.b.words & members
        if ma - mb and mb - ma and not _same_after_negation(ma - mb, mb - ma):
            return True
    if _already(p):
        return True
    ta, tb, changes = diff(p.cached, p.incoming)
    opening = _recast_opening_nouns(ta, tb, edits(p.cached, p.incoming)[2])
    small, big = sorted((p.a.content - opening, p.b.content - opening), key=len)
    return bool(small < big and big - small - GENERIC_WORDS and _adds_qualifier(changes, ta, tb))


def _same_after_negation(left: frozenset[str], right: frozenset[str]) -> bool:
    """ "non-member" vs "member": the negation rule has already checked that the other side says "not"."""
    def base(word: str) -> str:
        return word.removeprefix("non-")
    return {base(w) for w in left} == {base(w) for w in right}


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s", "er", "ly", "ation", "ment"):
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _variant(x: str, y: str) -> bool:
    """The same word in another form or with a slip: "quote"/"quotation", "recieve"/"receive"."""
    if singular(x) == singular(y) or _stem(x) == _stem(y):
        return True
    if min(len(x), len(y)) >= 4 and (x.startswith(y) or y.startswith(x)):
        return True
    return x[0] == y[0] and SequenceMatcher(None, x, y).ratio() >= 0.8


def _opposable(left: Tokens, right: Tokens) -> bool:
    """Whether a swap could turn the question round, which cosine cannot see: a preposition that qualifies
    ("within"/"after"), the second pole of a polarity pair ("cover"/"exclude", "stop watering") or WordNet
    antonyms ("compulsory"/"optional"). A span that is one WordNet phrase ("set up", "come with") is one word."""
    def words(span: Tokens) -> Tokens:
        return ("_".join(span),) if len(span) > 1 and "_".join(span) in WORDNET else span
    # Second poles on both sides ("turn off" / "disable") point the same way.
    if any(w in SECOND_POLE_WORDS for w in left) != any(w in SECOND_POLE_WORDS for w in right):
        return True
    left, right = words(left), words(right)
    if _prepositions_swapped(left, right):
        return True
    return any(wordnet_antonyms(x, y) for x in left for y in right)


def _prepositions_swapped(left: Tokens, right: Tokens) -> bool:
    """ "within" for "after", "from home" for "at the office": a qualifying preposition against another, or a span
    that is nothing else. One that merely goes ("library for performing" / "package providing") turns nothing round."""
    if len(left) == len(right) == 1 and {left[0], right[0]} <= LOCATIVES:
        return False  # "on the app" / "in the app": one place, said either way
    has_left = any(w in QUALIFYING_PREPOSITIONS for w in left)
    has_right = any(w in QUALIFYING_PREPOSITIONS for w in right)
    return (has_left and has_right) or all(w in QUALIFYING_PREPOSITIONS for w in left) \
        or all(w in QUALIFYING_PREPOSITIONS for w in right)


def substitution(p: Pair) -> bool:
    """A minimal edit that swaps one short span for another ("home insurance" vs "car insurance", "within" vs
    "after"): the texts agree on everything else, so the swapped words are what the question is about. Swaps of
    grammatical words, word forms, typos and listed synonyms are not differences, nor is a swap the embeddings
    score as near-identical in context (SWAP_SIMILARITY) unless it could be an opposite."""
    ta, _, changes = diff(p.cached, p.incoming)
    if len(changes) != 1 or changes[0][0] != "replace":
        return False
    _, left, right = changes[0]
    if len(left) > 3 or len(right) > 3 or len(ta) - len(left) < 2:
        return False
    left = tuple(w for w in left if w not in GRAMMAR_WORDS)
    right = tuple(w for w in right if w not in GRAMMAR_WORDS)
    if not left or not right:
        return False
    if len(left) == len(right) and all(_variant(x, y) or wordnet_synonyms(x, y)
                                       for x, y in zip(left, right, strict=True)):
        return False
    if wordnet_synonyms(" ".join(left), " ".join(right)):
        return False  # "sign up" / "register", "shop" / "store"
    if p.similarity is not None and p.similarity >= SWAP_SIMILARITY and not _opposable(left, right):
        return False  # "street" / "road", "switch" / "change"
    return "".join(left) != "".join(right)  # "sign up" vs "signup"


def _one_run_apart(x: Tokens, y: Tokens) -> bool:
    """Whether the shorter sequence is the longer with one run of tokens taken out (its common prefix and suffix
    cover it)."""
    short, long = (x, y) if len(x) <= len(y) else (y, x)
    prefix = 0
    while prefix < len(short) and short[prefix] == long[prefix]:
        prefix += 1
    suffix = 0
    while suffix < len(short) - prefix and short[-1 - suffix] == long[-1 - suffix]:
        suffix += 1
    return prefix + suffix == len(short)


def modifier(p: Pair) -> bool:
    """The only edit adds one word next to a shared content word: "gift" vs "gift card", "warranty" vs "extended
    warranty" name another thing. Nouns that restate their head ("capital city", "insurance policy") pass, and so
    do adverbs ("how long does it usually take"), which qualify a verb, not a thing."""
    # "a room" / "an accessible room": the article follows the word added, it adds nothing itself.
    ta = tuple(t for t in tokens(p.cached) if t not in ARTICLES)
    tb = tuple(t for t in tokens(p.incoming) if t not in ARTICLES)
    if not 0 < abs(len(ta) - len(tb)) <= MODIFIER_WORDS or not _one_run_apart(ta, tb):
        return False  # no diff can then be one insertion of at most MODIFIER_WORDS: spare computing it
    ops = [op for op in SequenceMatcher(None, ta, tb, autojunk=False).get_opcodes() if op[0] != "equal"]
    if len(ops) != 1 or ops[0][0] not in ("insert", "delete"):
        return False
    tag, i1, i2, j1, j2 = ops[0]
    longer, start, end = (tb, j1, j2) if tag == "insert" else (ta, i1, i2)
    if end - start > MODIFIER_WORDS:
        return False

    def modifies(word: str) -> bool:
        return not (word in STOPWORDS or word in FILLER_WORDS or word in GENERIC_WORDS or word in GRAMMAR_WORDS
                    or word in RESTATING_HEADS or word in ADVERBS)
    added = longer[start:end]
    if not any(modifies(w) for w in added):
        return False
    shorter_text = (p.cached if tag == "insert" else p.incoming).lower()
    if all(w in shorter_text for w in added):
        return False  # the words are there, written otherwise: "18-year-old" / "18 year old"
    def named(n: str) -> bool:
        return n not in STOPWORDS and n not in GRAMMAR_WORDS
    if len(added) > 1:  # several words qualify the head noun they come before: "third party only car insurance"
        return any(named(n) for n in longer[end : end + 1])
    neighbours = longer[max(0, start - 1) : start] + longer[end : end + 1]
    return any(named(n) for n in neighbours)


def frame_swap(p: Pair) -> bool:
    """The texts share their frame (most tokens equal) and differ only by swapped content words that are neither
    word forms, slips nor WordNet synonyms: "reset my password" vs "delete my account". Not in RULES: for a pair
    the default model scores low, its own score already says the swapped words matter; rewordings it underrates
    restructure the sentence instead. The lookup asks this of candidates below the threshold (the grey band)."""
    ta, tb, changes = diff(p.cached, p.incoming)
    if not changes or any(tag != "replace" for tag, _, _ in changes):
        return False
    equal = len(ta) - sum(len(left) for _, left, _ in changes)
    if equal < FRAME_SHARE * max(len(ta), len(tb)):
        return False
    for _, left, right in changes:
        left = tuple(w for w in left if w not in GRAMMAR_WORDS)
        right = tuple(w for w in right if w not in GRAMMAR_WORDS)
        if left and right and not (len(left) == len(right) and all(
                _variant(x, y) or wordnet_synonyms(x, y) for x, y in zip(left, right, strict=True))) \
                and not wordnet_synonyms(" ".join(left), " ".join(right)):
            return True
    return False


RULES: tuple[tuple[str, Rule], ...] = (
    ("number", number),
    ("calendar", calendar),
    ("asks", asks),
    ("ordinal", ordinal),
    ("negation", negation),
    ("polarity", polarity),
    ("action", action),
    ("entity", entity),
    ("direction", direction),
    ("parties", parties),
    ("persons", persons),
    ("part", part),
    ("scope", scope),
    ("someone", someone),
    ("substitution", substitution),
    ("modifier", modifier),
)
RULE_NAMES = tuple(name for name, _ in RULES)

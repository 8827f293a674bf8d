"""The guard for questions that are not English: rules that need no spaces between words.

guard.find_conflict hands a pair here when either side is not English (another script, or Latin text in another
language): the English rules read space-separated English words and would see nothing in "如何取消我的订阅" vs
"如何修改我的订阅", or find false differences in German grammar. Text is cut into units: one character for
Chinese, Japanese and Korean (Japanese hiragana is dropped: particles and endings), one word elsewhere, after the
language's function words are removed. The rules:

- "number":    the numbers differ, CJK numerals (三, 五, 十二, 两) and number words (drei, cinq, пять) included
- "negation":  one side says "not" (できません, 没有, 않, nicht, ne…pas, لم) and the other does not
- "entity":    text in another script names different Latin-script things ("Python" vs "JavaScript")
- "direction": the same content in another order, with a direction cue ("摄氏度转换成华氏度" vs the reverse)
- "scope":     one side only adds a qualifier ("运费" vs "国际运费", "envío" vs "envío internacional")
- "substitution": one short span swapped and everything else equal ("取消" vs "修改", "北京" vs "上海",
               "öffnen" vs "schließen"), unless the two spans are forms of one word or listed synonyms

API:
    is_foreign(text) -> bool
    find_script_conflict(cached, incoming) -> str | None
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from difflib import SequenceMatcher
from functools import lru_cache

from .multilingual import latin_language, script_of, scripts_in

CJK_SCRIPTS = frozenset({"han", "kana", "hangul"})
# A lone 一 is mostly "a"/"one" in words (一下, 一起, 一样): like "one" in English, it is no quantity.
CJK_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "两": 2, "兩": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
CJK_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "萬": 10_000, "亿": 100_000_000}
CJK_NUMERAL_RE = re.compile(f"[{''.join(CJK_DIGITS)}{''.join(CJK_UNITS)}]+")
DIGITS_RE = re.compile(r"\d+(?:[.,]\d+)?")
NUMBER_WORDS = {
    w: n for n, words in enumerate([
        "", "", "zwei deux dos два две двух اثنان", "drei trois tres три трёх ثلاثة", "vier quatre cuatro четыре",
        "fünf cinq cinco пять خمسة", "sechs six seis шесть ستة", "sieben sept siete семь سبعة",
        "acht huit ocho восемь ثمانية", "neun neuf nueve девять تسعة", "zehn dix diez десять عشرة",
    ]) for w in words.split()
}
CJK_NEGATIONS = ("不", "没", "未", "无", "無", "非", "ない", "なかった", "ません", "ず", "않", "못")
NEGATION_WORDS = frozenset("""안 не нет без nicht kein keine keinen keiner ohne ne n pas sans jamais no sin nunca
    لا لم لن ليس غير بدون""".split())
# Runs of one kind of letter: katakana (with ー), hiragana, hangul, han, then any other letters.
RUN_RE = re.compile(r"[\u30a0-\u30ff\u31f0-\u31ff\uff66-\uff9f]+|[\u3041-\u309f]+|[\uac00-\ud7af\u1100-\u11ff]+"
                    r"|[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[^\W\d_\u3041-\u30ff\uac00-\ud7af\u3400-\u9fff]+")
LATIN_NAME_RE = re.compile(r"[a-z][a-z0-9+#]*(?:[.\-][a-z0-9+#]+)*")
WORD_RE = re.compile(r"[^\W\d_]+")

# Function words and grammatical endings per language: changing them changes no answer. Chinese ones are cut
# out of the text (only multi-character words and particles that are never part of a content word).
ZH_STOP = sorted(set("""
    如何 怎么样 怎么 怎样 请问 请 我们 我的 你们的 你们 您 你 我 的 吗 呢 吧 了 啊 呀 啦
    可以 能否 是否 需要 哪里 哪些 什么 多少 一下 有没有 才能 等于 教えて 方法 能不能 是不是 要不要 可不可以
    """.split()), key=len, reverse=True)
ZH_STOP_RE = re.compile("|".join(map(re.escape, ZH_STOP)))
KO_STOP = frozenset("""
    어떻게 하나요 인가요 있나요 알려주세요 주세요 무엇 무엇인가요 얼마 얼마인가요
    어디서 어디 되나요 할 수 몇
    """.split())
# Korean particles and verb endings, cut from the end of a word (the longest that fits).
KO_ENDINGS = sorted(set("""
    을 를 이 가 은 는 에 의 도 로 으로 에서 에게 하려면 으려면 려면 하나요 나요 인가요
    이에요 예요 해요 하면 할 까요 습니까 입니까 는지 인지 이란 란 요
    """.split()), key=len, reverse=True)
WORD_STOP = frozenset("""
    как какой какая какие каков какова где когда что мне мой моя мои мою свой свою свои я вы ваш ваши у вас это ли
    можно нужно сколько в на и с по для о об к ко же бы будет есть
    wie was wann wo welche welcher welches wer ich mein meine meinen meiner sie ihr ihre ihren es gibt der die das
    den dem des ein eine einen einem ist sind kann können bitte und zu mit für von im am auf an viel viele haben habe
    wird
    comment quel quelle quels quelles quand où qui je j mon ma mes vous votre vos un une des et de du le la les l d
    est sont puis peut pour avec par en au aux il y a t ce ça fait font combien à fera sera
    cómo como qué que cuándo cuando dónde donde cuál cual cuáles quién puedo puede mi mis usted su sus un una unos el
    la los las y de del para con por en al hay es son se me lo cuánto cuánta cuántos cuántas a hará estará
    كيف ما هي هو هل يمكنني يمكن أن في من إلى على عن عبر كم لدي لديكم أنا متى أين ماذا التي الذي و سيكون
    """.split())
# Words that say which way a conversion or a route goes, in the languages measured; postpositions follow
# the target ("華氏に", "화씨로"), the others stand between source and target.
POSTPOSITION_CUES = frozenset("に へ 로 으로".split())
DIRECTION_CUES = frozenset("转换成 换成 转成 转换为 到 成 в in nach en vers a إلى".split()) | POSTPOSITION_CUES
# Support vocabulary said two ways in one language; each group maps to its first word.
SYNONYM_GROUPS = """删除 注销; 更改 修改; 邮费 运费; 支付 付款; аккаунт учётную; поменять изменить сменить;
    abo abonnement;
    kilometer km; kilómetros km; kilometres km; envío entrega; modifier changer; كيلومترات كم; prix coûte coût;
    precio cuesta costo; preis kostet; цена стоит стоимость; سعر تكلفة; temps météo; tiempo clima;
    反转 倒序 逆順 反転; ساعات مواعيد أوقات; 변경 바꾸; 連絡 問合; horaires heures; moyens modes; contacter joindre;
    métodos formas; часы график; способы варианты; キロメートル キロ; zahlungsmethoden zahlungsarten;
    öffnungszeiten geöffnet"""
# What a rewording adds without narrowing the question: "info", "staff", "time", "my account", and verbs of
# finding, offering, accepting and checking ("Where do I find my invoice?" / "Where is my invoice?"). Chinese and
# Japanese spans are matched whole, other words by their beginning.
GENERIC_SPANS = sorted(set("""信息 人员 情况 问题 服务 是 在 有 时间 可能 可以 能不能 情報 時間 確認 登録 何
                           何番""".split()), key=len, reverse=True)
GENERIC_SPAN_RE = re.compile("|".join(map(re.escape, GENERIC_SPANS)))
GENERIC_STEMS = tuple("""정보 찾 시간 가능 информац данн запис аккаунт приним найт найд могу information informationen
    información account compte konto cuenta حساب حال أجد الممكن ممكن find biet propos ofrec trouv tiempo atención
    possible möglich posible laut""".split())
SYNONYMS = {w: group.split()[0] for group in SYNONYM_GROUPS.split(";") for w in group.split()}


def is_foreign(text: str) -> bool:
    """Whether the English rules cannot read `text`: letters of another script, or Latin text in another language."""
    scripts = scripts_in(text)
    if scripts - {"latin"}:
        return True
    return bool(scripts) and latin_language(text) not in (None, "en")


def _cjk_number(run: str) -> float | None:
    if run == "一":
        return None
    total, current = 0, 0
    for ch in run:
        if ch in CJK_DIGITS:
            current = CJK_DIGITS[ch]
        else:
            total += (current or 1) * CJK_UNITS[ch]
            current = 0
    return float(total + current)


@lru_cache(maxsize=4096)
def _normal(text: str) -> str:
    # NFKC folds full-width digits and letters ("３", "ｉＰｈｏｎｅ"); Arabic-Indic digits become ASCII ones.
    text = unicodedata.normalize("NFKC", text).lower()
    return "".join(str(unicodedata.digit(c)) if c.isdigit() and not c.isascii() else c for c in text)


@lru_cache(maxsize=4096)
def _numbers(text: str) -> frozenset[float]:
    lower = _normal(text)
    found = {float(m.replace(",", ".")) for m in DIGITS_RE.findall(lower)}
    found |= {n for n in (_cjk_number(m) for m in CJK_NUMERAL_RE.findall(lower)) if n is not None}
    found |= {float(NUMBER_WORDS[w]) for w in WORD_RE.findall(lower) if w in NUMBER_WORDS}
    return frozenset(found)


@lru_cache(maxsize=4096)
def _negated(text: str) -> bool:
    """Whether the question says "not": Japanese endings (できません, していない), CJK 不/没/未, Korean 안/않/못,
    and the words of the other languages (French ne…pas counts once)."""
    lower = _normal(text)
    if scripts_in(lower) & CJK_SCRIPTS:
        lower = ZH_STOP_RE.sub(" ", lower)
        if any(marker in lower for marker in CJK_NEGATIONS):
            return True
    words = WORD_RE.findall(lower)
    return any(w in NEGATION_WORDS or (script_of(w[0]) == "hangul" and w.startswith(("않", "못"))) for w in words)


def _latin_names(text: str) -> frozenset[str]:
    """Latin-script words inside text of another script: names of products, languages, places."""
    lower = _normal(text)
    if not scripts_in(lower) - {"latin"}:
        return frozenset()
    return frozenset(LATIN_NAME_RE.findall(lower))


@lru_cache(maxsize=4096)
def _units(text: str) -> tuple[str, ...]:
    """Content units in order: Chinese characters one by one, a katakana or Latin run whole, hiragana dropped
    (particles and endings), Korean words without their endings, other words whole."""
    lower = CJK_NUMERAL_RE.sub(" ", DIGITS_RE.sub(" ", _normal(text)))
    if scripts_in(lower) & CJK_SCRIPTS:
        lower = ZH_STOP_RE.sub(" ", lower)
    units: list[str] = []
    for run in RUN_RE.findall(lower):
        script = script_of(run[0])
        if script == "hangul":
            units += _hangul_units(run)
        elif script == "han":
            units += list(run)
        elif script == "kana":
            if not _hiragana(run[0]):
                units.append(run)
        elif run not in WORD_STOP and run not in NUMBER_WORDS:
            units.append(SYNONYMS.get(run, run))
    return tuple(units)


def _hangul_units(word: str) -> list[str]:
    if word in KO_STOP:
        return []
    for ending in KO_ENDINGS:
        if len(word) > len(ending) and word.endswith(ending):
            word = word[: -len(ending)]
            break
    return [] if word in KO_STOP else [word]


def _hiragana(ch: str) -> bool:
    return "\u3041" <= ch <= "\u309f"


def _cue_at(lower: str, cue: str) -> int:
    if script_of(cue[0]) in CJK_SCRIPTS:
        return lower.find(cue)
    match = re.search(rf"(?<!\w){re.escape(cue)}(?!\w)", lower)
    return match.start() if match else -1


def _swapped_around_cue(cached: str, incoming: str, ua: tuple[str, ...], ub: tuple[str, ...]) -> bool:
    """The same content with two parts swapped around one direction cue: "Celsius in Fahrenheit" vs
    "Fahrenheit in Celsius", "摄氏度转换成华氏度" vs "华氏度转换成摄氏度"."""
    sa, sb = [_stem(u) for u in ua], [_stem(u) for u in ub]
    if sa == sb or sorted(sa) != sorted(sb):
        return False
    first = next(n for n in range(len(sa)) if sa[n] != sb[n])
    x, y = sa[first], sb[first]  # y comes later in the cached text, x later in the incoming one
    la, lb = _normal(cached), _normal(incoming)
    for cue in DIRECTION_CUES:
        ca, cb = _cue_at(la, cue), _cue_at(lb, cue)
        if ca < 0 or cb < 0:
            continue
        if cue in POSTPOSITION_CUES:
            if _just_before(la, y, ca) and _just_before(lb, x, cb):
                return True
        elif la.find(x) < ca < la.find(y, ca) and lb.find(y) < cb < lb.find(x, cb):
            return True
    return False


def _just_before(lower: str, unit: str, cue_at: int) -> bool:
    """`unit` ends at most a short word before the cue: the cue marks it ("華氏に": 華 two characters before)."""
    start = lower.rfind(unit, 0, cue_at)
    return start >= 0 and cue_at - (start + len(unit)) <= 3


def _variant(x: str, y: str) -> bool:
    """Forms of one word: "Abonnement"/"Abo" share a stem, "Цельсия"/"Цельсии" an ending apart."""
    if SYNONYMS.get(x, x) == SYNONYMS.get(y, y):
        return True
    if len(x) == 1 or len(y) == 1:
        return False
    if script_of(x[0]) == "arabic" and script_of(y[0]) == "arabic":
        kx, ky = _arabic_root(x), _arabic_root(y)
        return len(min(kx, ky, key=len)) >= 2 and (kx in ky or ky in kx)
    common = len(_common_prefix(x, y))
    return common >= 4 or (common >= 3 and abs(len(x) - len(y)) <= 2)


def _arabic_root(word: str) -> str:
    """A word's consonants without the article, the first-person prefix and long vowels: "أحذف" (I delete)
    and "حذف" (deleting), "أعيد" and "إعادة" share one."""
    word = re.sub("[أإآ]", "ا", word).replace("ة", "").replace("ء", "").replace("ى", "ي")
    if word.startswith("ال") and len(word) > 3:
        word = word[2:]
    return re.sub("[اوي]", "", word)


def _common_prefix(x: str, y: str) -> str:
    n = 0
    while n < min(len(x), len(y)) and x[n] == y[n]:
        n += 1
    return x[:n]


def _joined_synonym(ua: tuple[str, ...], ub: tuple[str, ...], i1: int, i2: int, j1: int, j2: int) -> bool:
    """The swapped spans are listed synonyms, alone or with the character on either side ("修|改" vs "更|改")."""
    for before, after in ((0, 0), (1, 0), (0, 1)):
        if i1 - before < 0 or j1 - before < 0 or i2 + after > len(ua) or j2 + after > len(ub):
            continue
        a, b = "".join(ua[i1 - before:i2 + after]), "".join(ub[j1 - before:j2 + after])
        if SYNONYMS.get(a, a) == SYNONYMS.get(b, b):
            return True
    return False


def find_script_conflict(cached: str, incoming: str) -> str | None:
    """Name of the first rule saying the two questions need different answers, or None if none does."""
    if _numbers(cached) != _numbers(incoming):
        return "number"
    if _negated(cached) != _negated(incoming):
        return "negation"
    na, nb = _latin_names(cached), _latin_names(incoming)
    if na - nb and nb - na:
        return "entity"
    ua, ub = _units(cached), _units(incoming)
    if _swapped_around_cue(cached, incoming, ua, ub):
        return "direction"
    changes = [op for op in SequenceMatcher(None, ua, ub, autojunk=False).get_opcodes() if op[0] != "equal"]
    if _adds_qualifier(ua, ub, changes):
        return "scope"
    cjk = bool(scripts_in(cached) & CJK_SCRIPTS)
    if not changes or {tag for tag, *_ in changes} in ({"insert"}, {"delete"}):
        return None
    i1, i2, j1, j2 = changes[0][1], changes[-1][2], changes[0][3], changes[-1][4]
    # Two changes one character apart are one swap: "上午" vs "晚上" share 上 and diff as an insert and a delete.
    if not (len(changes) == 1 and changes[0][0] == "replace") and not (
            cjk and len(changes) == 2 and changes[1][1] - changes[0][2] <= 1 and i2 - i1 <= 3 and j2 - j1 <= 3):
        return None
    left, right = ua[i1:i2], ub[j1:j2]
    # Everything else must agree: a swapped span in a sentence that keeps its other content (CJK: at least one
    # character; elsewhere a lone content word each is the whole question: "öffnen" vs "schließen").
    longest = 6 if cjk else 2
    if len(left) > longest or len(right) > longest or (cjk and len(ua) == len(left)):
        return None
    if _joined_synonym(ua, ub, i1, i2, j1, j2):
        return None
    if len(left) == len(right) and all(_variant(x, y) for x, y in zip(left, right, strict=True)):
        return None
    return "substitution"


def _adds_qualifier(ua: tuple[str, ...], ub: tuple[str, ...],
                    changes: Sequence[tuple[str, int, int, int, int]]) -> bool:
    """One side only adds content to the other: "运费" vs "国际运费", "envío" vs "envío internacional" ask about a
    narrower case. Added words that narrow nothing (GENERIC_SPANS, GENERIC_STEMS) do not count."""
    if not changes or not ua or not ub or len({tag for tag, *_ in changes}) != 1 or changes[0][0] == "replace":
        return False
    spans = [ub[j1:j2] if tag == "insert" else ua[i1:i2] for tag, i1, i2, j1, j2 in changes]
    return not all(not GENERIC_SPAN_RE.sub("", "".join(span)) or all(u.startswith(GENERIC_STEMS) for u in span)
                   for span in spans)


def _stem(unit: str) -> str:
    return unit[:5]

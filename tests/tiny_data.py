"""Tiny English and Chinese NER data for tests."""

from pathlib import Path
from typing import List, Tuple

from spacy.language import Language
from spacy.tokens import Doc, Span

EN_TRAIN: List[Tuple[str, List[Tuple[int, int, str]]]] = [
    ("Alice lives in Paris", [(0, 5, "PER"), (15, 20, "LOC")]),
    ("Bob works at Google in London", [(0, 3, "PER"), (13, 19, "ORG"), (23, 29, "LOC")]),
    ("Google hired Alice", [(0, 6, "ORG"), (13, 18, "PER")]),
    ("New York is big", [(0, 8, "LOC")]),
    ("Nothing to see here", []),
]

# Character-tokenized Chinese: (characters, entity spans in characters).
ZH_TRAIN: List[Tuple[str, List[Tuple[int, int, str]]]] = [
    ("张三住在北京", [(0, 2, "PER"), (4, 6, "LOC")]),
    ("李四在微软工作", [(0, 2, "PER"), (3, 5, "ORG")]),
    ("北京很大", [(0, 2, "LOC")]),
    ("今天天气很好", []),
]


def en_docs(nlp: Language) -> List[Doc]:
    docs = []
    for text, ents in EN_TRAIN:
        doc = nlp.make_doc(text)
        doc.ents = [doc.char_span(s, e, label=label) for s, e, label in ents]
        docs.append(doc)
    return docs


def zh_docs(nlp: Language) -> List[Doc]:
    docs = []
    for text, ents in ZH_TRAIN:
        doc = Doc(nlp.vocab, words=list(text), spaces=[False] * len(text))
        doc.ents = [Span(doc, s, e, label=label) for s, e, label in ents]
        docs.append(doc)
    return docs


# The corpora beside the checkout (absent on some machines).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

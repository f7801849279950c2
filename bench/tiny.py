"""Stand-in corpora for ``--quick`` where the shared corpora are absent: a few
hand-written sentences per language, repeated. Their figures mean nothing."""

from typing import Dict, List, Tuple

from spacy_bilstm_crf.convert import Sentence

Entity = Tuple[int, int, str]

# English: tokens and entity spans in tokens (CoNLL-style labels).
EN: List[Tuple[str, List[Entity]]] = [
    ("Maria Lopez flew from Madrid to Berlin on Monday .", [(0, 2, "PER"), (4, 5, "LOC"), (6, 7, "LOC")]),
    ("Siemens opened an office in Lyon .", [(0, 1, "ORG"), (5, 6, "LOC")]),
    ("The European Union fined Acme Corp .", [(1, 3, "ORG"), (4, 6, "ORG")]),
    ("Kenji Sato joined Toyota last year .", [(0, 2, "PER"), (3, 4, "ORG")]),
    ("Rain is expected across the region .", []),
    ("Brazil beat Italy in the World Cup final .", [(0, 1, "LOC"), (2, 3, "LOC"), (5, 7, "MISC")]),
    ("Anna met Peter in Oslo .", [(0, 1, "PER"), (2, 3, "PER"), (4, 5, "LOC")]),
    ("Shares of Nokia rose 3 percent .", [(2, 3, "ORG")]),
]

# Chinese: one token per character, entity spans in characters.
ZH: List[Tuple[str, List[Entity]]] = [
    ("王芳在上海工作", [(0, 2, "PER"), (3, 5, "LOC")]),
    ("华为公司在深圳", [(0, 4, "ORG"), (5, 7, "LOC")]),
    ("李明去了广州", [(0, 2, "PER"), (4, 6, "LOC")]),
    ("今天下雨了", []),
    ("新华社报道了这件事", [(0, 3, "ORG")]),
    ("张伟和刘洋在北京见面", [(0, 2, "PER"), (3, 5, "PER"), (6, 8, "LOC")]),
]


def tiny_splits(corpus: str) -> Dict[str, List[Sentence]]:
    """Train, dev and test splits of stand-in sentences for ``corpus``."""
    if corpus == "conll2003":
        sentences = [Sentence(text.split(), list(spans)) for text, spans in EN]
    elif corpus == "msra":
        sentences = [Sentence(list(text), list(spans)) for text, spans in ZH]
    else:
        raise ValueError(f"no stand-in data for {corpus!r}")
    return {"train": sentences * 8, "dev": sentences, "test": sentences * 2}

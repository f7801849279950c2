"""Corpora for the benchmarks: CoNLL-2003 English and MSRA Chinese as DocBins.

Every split is one Doc per sentence, tokenized as in the column files (a word
per token for CoNLL, a character per token for MSRA). All systems train and
are evaluated on these gold tokens, so scores and words/s are comparable.
"""

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from spacy_bilstm_crf.convert import Sentence, read_column_file, sentences_to_docs, split_dev

from .common import read_json, write_json

LANGS = {"conll2003": "en", "msra": "zh"}


@dataclass
class Limits:
    """Sentence caps per split (None: all) and the MSRA dev fraction."""

    train: Optional[int] = None
    dev: Optional[int] = None
    test: Optional[int] = None
    dev_fraction: float = 0.02
    seed: int = 0
    # Read only about this many lines of each file (--quick: skip reading all of MSRA).
    max_lines: Optional[int] = None


def _sample(items: Sequence[Sentence], limit: Optional[int], seed: int) -> List[Sentence]:
    """A seeded random sample of ``limit`` items, in their original order."""
    if limit is None or limit >= len(items):
        return list(items)
    keep = set(random.Random(seed).sample(range(len(items)), limit))
    return [item for i, item in enumerate(items) if i in keep]


def _head_copy(source: Path, target: Path, max_lines: int) -> Path:
    """The first ``max_lines`` lines of a column file, up to the end of a sentence."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with source.open(encoding="utf-8") as src, target.open("w", encoding="utf-8") as dst:
        for i, line in enumerate(src):
            if i >= max_lines and not line.strip():
                break
            dst.write(line)
    return target


def _read_splits(
    name: str, data_dir: Path, limits: Limits, scratch: Path
) -> Tuple[Dict[str, List[Sentence]], Dict[str, Any]]:
    folder = data_dir / name
    notes: Dict[str, Any] = {}
    if limits.max_lines:
        for file in sorted(folder.glob("*.txt")):
            _head_copy(file, scratch / file.name, limits.max_lines)
        folder = scratch
        notes["max_lines"] = limits.max_lines
    if name == "conll2003":
        # IOB2 with a few hundred IOB1 leftovers: read leniently (an opening I-X is B-X), repairs counted.
        corpora = {split: read_column_file(folder / f"{split}.txt", lenient=True) for split in ("train", "dev", "test")}
        notes["repairs"] = {split: corpus.repair_counts() for split, corpus in corpora.items()}
        train, dev, test = (corpora[split].sentences for split in ("train", "dev", "test"))
        notes["dev_source"] = "dev.txt"
    elif name == "msra":
        train_corpus = read_column_file(folder / "train.txt", lenient=True)
        test_corpus = read_column_file(folder / "test.txt", lenient=True)
        notes["repairs"] = {"train": train_corpus.repair_counts(), "test": test_corpus.repair_counts()}
        train, dev = split_dev(train_corpus.sentences, limits.dev_fraction, limits.seed)
        test = test_corpus.sentences
        notes["dev_source"] = f"seeded {limits.dev_fraction:.0%} of train.txt (seed {limits.seed}), removed from train"
    else:
        raise ValueError(f"unknown corpus {name!r}")
    return {"train": train, "dev": dev, "test": test}, notes


def _tiny_splits(name: str) -> Dict[str, List[Sentence]]:
    """Stand-in data from tests/tiny_data.py, for --quick without the shared corpora."""
    import spacy

    from spacy_bilstm_crf.convert import docs_to_sentences
    from tests.tiny_data import en_docs, zh_docs

    nlp = spacy.blank(LANGS[name])
    docs = en_docs(nlp) if name == "conll2003" else zh_docs(nlp)
    sentences = docs_to_sentences(docs) * 8
    return {"train": sentences, "dev": sentences[:8], "test": sentences[:16]}


def prepare_corpus(
    name: str, data_dir: Path, out_dir: Path, limits: Limits, allow_tiny: bool = False
) -> Dict[str, Any]:
    """Write ``out_dir/{train,dev,test}.spacy`` and return what they hold."""
    lang = LANGS[name]
    if (data_dir / name).exists():
        splits, notes = _read_splits(name, data_dir, limits, out_dir / "raw")
        notes["source"] = str(data_dir / name)
    elif allow_tiny:
        splits, notes = _tiny_splits(name), {"source": "tests/tiny_data.py (shared data not found)"}
    else:
        raise FileNotFoundError(f"corpus {name!r} not found under {data_dir}; pass --data DIR")
    caps = {"train": limits.train, "dev": limits.dev, "test": limits.test}
    out_dir.mkdir(parents=True, exist_ok=True)
    info: Dict[str, Any] = {"lang": lang, "notes": notes, "splits": {}}
    labels: Set[str] = set()
    lengths: Dict[str, List[int]] = {}
    for split, sentences in splits.items():
        kept = _sample(sentences, caps[split], limits.seed + len(split))
        lengths[split] = [len(s.tokens) for s in kept]
        docs = sentences_to_docs(kept, lang)
        DocBin(docs=docs, store_user_data=False).to_disk(out_dir / f"{split}.spacy")
        entities = sum(len(s.spans) for s in kept)
        labels.update(label for s in kept for _, _, label in s.spans)
        info["splits"][split] = {
            "sentences": len(kept),
            "sentences_available": len(sentences),
            "words": sum(len(s.tokens) for s in kept),
            "entities": entities,
            "path": str(out_dir / f"{split}.spacy"),
        }
    info["labels"] = sorted(labels)
    write_json(out_dir / "meta.json", {"labels": info["labels"], "lengths": lengths})
    return info


def read_meta(corpus_dir: Path) -> Dict[str, Any]:
    """Labels and sentence lengths per split, as ``prepare_corpus`` wrote them."""
    return read_json(corpus_dir / "meta.json")


def load_docs(path: Path, vocab: Vocab) -> List[Doc]:
    return list(DocBin().from_disk(path).get_docs(vocab))


def bare_doc(doc: Doc, vocab: Optional[Vocab] = None) -> Doc:
    """The same tokens, without entities or other annotation."""
    return Doc(vocab or doc.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])


def bio_tags(doc: Doc) -> List[str]:
    """IOB2 tags of ``doc.ents``."""
    tags = ["O"] * len(doc)
    for ent in doc.ents:
        tags[ent.start] = f"B-{ent.label_}"
        for i in range(ent.start + 1, ent.end):
            tags[i] = f"I-{ent.label_}"
    return tags


def short_text(name: str) -> str:
    """The single short text used for latency."""
    if name == "msra":
        return "中国人民银行行长周小川昨天在北京表示。"
    return "EU rejects German call to boycott British lamb in Brussels ."

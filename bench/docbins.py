"""Corpora for the benchmark: CoNLL-2003 English and MSRA Chinese as DocBins.

Every split is one Doc per sentence, tokenized as in the column files (a word
per token for CoNLL, a character per token for MSRA). All systems train and
are evaluated on these gold tokens, so scores and words/s are comparable.
"""

import hashlib
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from spacy.tokens import Doc, DocBin
from spacy.vocab import Vocab

from spacy_bilstm_crf.convert import Sentence, read_column_file, sentences_to_docs, split_dev

from .common import read_json, write_json
from .specs import Limits
from .tiny import tiny_splits

LANGS = {"conll2003": "en", "msra": "zh"}
META_FORMAT = 2  # 2: each split's document sizes (a folder of format 1 is prepared again)
SPLITS = ("train", "dev", "test")


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
        corpora = {split: read_column_file(folder / f"{split}.txt", lenient=True) for split in SPLITS}
        splits = {split: corpus.sentences for split, corpus in corpora.items()}
        notes["schemes"] = {split: corpus.scheme for split, corpus in corpora.items()}
        notes["repairs"] = {split: corpus.repair_counts() for split, corpus in corpora.items()}
        notes["dev_source"] = "dev.txt"
    elif name == "msra":
        train_corpus = read_column_file(folder / "train.txt", lenient=True)
        test_corpus = read_column_file(folder / "test.txt", lenient=True)
        notes["repairs"] = {"train": train_corpus.repair_counts(), "test": test_corpus.repair_counts()}
        train, dev = split_dev(train_corpus.sentences, limits.dev_fraction, limits.seed, limits.dev_split)
        splits = {"train": train, "dev": dev, "test": test_corpus.sentences}
        share = f"{limits.dev_fraction:.0%} of train.txt"
        if limits.dev_split == "block":
            notes["dev_source"] = f"the last {share}, one contiguous block, removed from train"
        else:
            notes["dev_source"] = f"seeded {share} (seed {limits.seed}), removed from train"
    else:
        raise ValueError(f"unknown corpus {name!r}")
    return splits, notes


def prepare_corpus(
    name: str, data_dir: Path, out_dir: Path, limits: Limits, allow_tiny: bool = False
) -> Dict[str, Any]:
    """Write ``out_dir/{train,dev,test}.spacy`` and ``meta.json``, and return
    what they hold. A folder already prepared with the same limits is reused."""
    meta_path = out_dir / "meta.json"
    if meta_path.exists():
        meta = read_json(meta_path)
        same = meta.get("limits") == asdict(limits) and meta.get("format") == META_FORMAT
        if same and all((out_dir / f"{s}.spacy").exists() for s in SPLITS):
            return meta["info"]
    if (data_dir / name).exists():
        splits, notes = _read_splits(name, data_dir, limits, out_dir / "raw")
        notes["source"] = f"shared data: {name}/"
    elif allow_tiny:
        splits, notes = tiny_splits(name), {"source": "bench/tiny.py (the shared corpora were not found)"}
    else:
        raise FileNotFoundError(f"corpus {name!r} not found under {data_dir}; pass --data DIR")
    caps = {"train": limits.train, "dev": limits.dev, "test": limits.test}
    out_dir.mkdir(parents=True, exist_ok=True)
    lang = LANGS[name]
    info: Dict[str, Any] = {"lang": lang, "notes": notes, "splits": {}}
    labels: Set[str] = set()
    lengths: Dict[str, List[int]] = {}
    for split, sentences in splits.items():
        kept = _sample(sentences, caps[split], limits.seed + len(split))
        lengths[split] = [len(s.tokens) for s in kept]
        DocBin(docs=sentences_to_docs(kept, lang), store_user_data=False).to_disk(out_dir / f"{split}.spacy")
        labels.update(label for s in kept for _, _, label in s.spans)
        info["splits"][split] = {
            "sentences": len(kept),
            "sentences_available": len(sentences),
            "words": sum(lengths[split]),
            "entities": sum(len(s.spans) for s in kept),
            "fingerprint": fingerprint(kept),
            "documents": document_sizes(kept),
        }
    info["labels"] = sorted(labels)
    write_json(meta_path, {"format": META_FORMAT, "limits": asdict(limits), "info": info, "lengths": lengths})
    return info


def document_sizes(sentences: Sequence[Sentence]) -> Optional[List[int]]:
    """How many of ``sentences`` each document holds, in order (the file's
    ``-DOCSTART-`` documents); None for a file without documents (MSRA),
    whose items are its sentences."""
    sizes: List[int] = []
    previous = None
    for sentence in sentences:
        if sentence.doc_id != previous:
            sizes.append(0)
            previous = sentence.doc_id
        sizes[-1] += 1
    return sizes if len(sizes) > 1 else None


def fingerprint(sentences: Sequence[Sentence]) -> str:
    """A short hash of the tokens and entities of ``sentences``, in order: two
    cells can be paired sentence by sentence only if their test fingerprints agree."""
    digest = hashlib.sha256()
    for s in sentences:
        digest.update(("\x1f".join(s.tokens) + "\x1e" + repr(sorted(s.spans)) + "\x1d").encode("utf8"))
    return digest.hexdigest()[:16]


def read_meta(corpus_dir: Path) -> Dict[str, Any]:
    """Limits, info and sentence lengths per split, as ``prepare_corpus`` wrote them."""
    return read_json(corpus_dir / "meta.json")


def load_docs(path: Path, vocab: Vocab) -> List[Doc]:
    return list(DocBin().from_disk(path).get_docs(vocab))


def bare_doc(doc: Doc, vocab: Optional[Vocab] = None) -> Doc:
    """The same tokens, without entities or other annotation."""
    return Doc(vocab or doc.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc])


def doc_spans(doc: Doc) -> List[Tuple[int, int, str]]:
    """The entities of ``doc`` as (start, end, label) token spans."""
    return [(ent.start, ent.end, ent.label_) for ent in doc.ents]

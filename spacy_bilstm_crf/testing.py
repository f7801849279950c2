"""Test helpers for users and for this package: a tiny BERT built locally."""

from pathlib import Path
from typing import Iterable

LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"


def build_tiny_bert(path: Path, words: Iterable[str], *, width: int = 32, depth: int = 2, seed: int = 0) -> Path:
    """Save a randomly initialised BERT (``depth`` layers of ``width``) whose
    WordPiece vocabulary holds ``words`` (lower-cased; single CJK characters
    work too) and the letters and digits, to ``path``, where transformers and
    spacy-transformers load it by path. Nothing is downloaded. The weights
    depend only on ``seed`` (the global torch RNG is left as it was)."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab += sorted({w.lower() for w in words if w.strip() and not any(c.isspace() for c in w)})
    vocab += [f"##{c}" for c in LETTERS] + list(LETTERS + ".,-'\"()")
    vocab = list(dict.fromkeys(vocab))  # unique, in order
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf8")
    BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True).save_pretrained(str(path))
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=width,
        num_hidden_layers=depth,
        num_attention_heads=2,
        intermediate_size=2 * width,
        max_position_embeddings=512,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    model.save_pretrained(str(path))
    return path

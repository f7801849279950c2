"""The tests' builders, in one place: small model settings, blank pipelines
with crf_ner (over a CPU tok2vec or a transformer), the tiny data as Examples,
a seeded training loop, and entities as tuples.

The pipelines are multi-language ("xx") unless a test asks for a language:
crf_ner knows no language, the English examples tokenize as in English, and
xx's tokenizer is built in a third of the time of English's (no English
exceptions), which the many small pipelines of the suite add up.
"""

import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import spacy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import fix_random_seed

from .tiny_data import EN_TRAIN, ZH_TRAIN

Data = Sequence[Tuple[str, List[Tuple[int, int, str]]]]


def cnn_tok2vec(width: int = 32, depth: int = 2, embed_size: int = 500) -> Dict[str, Any]:
    """spaCy's CPU tok2vec, small: each token sees 1 + 2 * depth tokens (window 1)."""
    return {
        "@architectures": "spacy.HashEmbedCNN.v2",
        "pretrained_vectors": None,
        "width": width,
        "depth": depth,
        "embed_size": embed_size,
        "window_size": 1,
        "maxout_pieces": 2,
        "subword_features": True,
    }


TOK2VEC = cnn_tok2vec(width=16, depth=1, embed_size=300)  # each token sees 3 tokens
# Every encoder small (the tiny data is learnt in 80 steps with head_lr_scale 5),
# and without dropout (a test that wants dropout sets it).
ENCODERS: Dict[str, Dict[str, Any]] = {
    "bilstm": {"@architectures": "spacy-bilstm-crf.BiLSTMEncoder.v1", "hidden_width": 8, "dropout": 0.0},
    "idcnn": {"@architectures": "spacy-bilstm-crf.IDCNNEncoder.v2", "width": 16, "iterations": 2, "dropout": 0.0},
    "idcnn_v1": {"@architectures": "spacy-bilstm-crf.IDCNNEncoder.v1", "width": 16, "iterations": 2, "dropout": 0.0},
    "none": {"@architectures": "spacy-bilstm-crf.NoEncoder.v1"},
}
Encoder = Union[str, Dict[str, Any]]


def encoder_config(encoder: Encoder) -> Dict[str, Any]:
    """An encoder block: a name of ``ENCODERS`` or a block as it is."""
    return dict(ENCODERS[encoder]) if isinstance(encoder, str) else encoder


def crf_tagger(encoder: Encoder = "bilstm", tok2vec: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The CRFTagger.v1 block over ``tok2vec`` (default ``TOK2VEC``) and ``encoder``."""
    return {
        "@architectures": "spacy-bilstm-crf.CRFTagger.v1",
        "tok2vec": tok2vec or TOK2VEC,
        "encoder": encoder_config(encoder),
    }


def make_nlp(
    encoder: Encoder = "bilstm", lang: str = "xx", tok2vec: Optional[Dict[str, Any]] = None, **settings: Any
) -> Language:
    """A blank ``lang`` pipeline with crf_ner alone, its other settings ``settings``."""
    nlp = spacy.blank(lang)
    nlp.add_pipe("crf_ner", config={"model": crf_tagger(encoder, tok2vec), **settings})
    return nlp


def examples(nlp: Language, data: Optional[Data] = None) -> List[Example]:
    """The tiny data (``EN_TRAIN``; for a Chinese pipeline ``ZH_TRAIN``, a token
    per character) as Examples; entities in character offsets."""
    if nlp.lang == "zh":
        out = []
        for text, ents in data or ZH_TRAIN:
            doc = Doc(nlp.vocab, words=list(text), spaces=[False] * len(text))
            out.append(Example.from_dict(doc, {"entities": ents}))
        return out
    return [Example.from_dict(nlp.make_doc(text), {"entities": ents}) for text, ents in data or EN_TRAIN]


def train(nlp: Language, steps: int, data: Optional[Data] = None, seed: int = 0) -> List[float]:
    """Initialize on ``examples(nlp, data)`` and update ``steps`` times on all
    of them; crf_ner's loss of each update."""
    exs = examples(nlp, data)
    fix_random_seed(seed)
    optimizer = nlp.initialize(lambda: exs)
    return [nlp.update(exs, sgd=optimizer)["crf_ner"] for _ in range(steps)]


def entities(doc: Doc) -> List[Tuple[int, int, str]]:
    """The doc's entities as (start token, end token, label)."""
    return [(ent.start, ent.end, ent.label_) for ent in doc.ents]


def char_entities(doc: Doc) -> List[Tuple[int, int, str]]:
    """The doc's entities as (start character, end character, label), as in the tiny data."""
    return [(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents]


# --- transformers ------------------------------------------------------------------


def transformer_model(name: Any, window: int = 128, stride: int = 96) -> Dict[str, Any]:
    """A spacy-transformers model over the (local) transformer ``name``."""
    return {
        "@architectures": "spacy-transformers.TransformerModel.v3",
        "name": str(name),
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": window, "stride": stride},
        "tokenizer_config": {"use_fast": True},
    }


TRANSFORMER_LISTENER = {
    "@architectures": "spacy-transformers.TransformerListener.v1",
    "grad_factor": 1.0,
    "pooling": {"@layers": "reduce_mean.v1"},
    "upstream": "*",
}


def inline_transformer(name: Any, window: int = 128, stride: int = 96) -> Dict[str, Any]:
    """A tok2vec that is a transformer of its own (not shared through a listener)."""
    settings = {key: value for key, value in transformer_model(name, window, stride).items() if key != "@architectures"}
    return {
        "@architectures": "spacy-transformers.Tok2VecTransformer.v3",
        "pooling": {"@layers": "reduce_mean.v1"},
        "grad_factor": 1.0,
        **settings,
    }


def listener_nlp(
    bert: Path, encoder: Encoder = "bilstm", window: int = 128, stride: int = 96, **settings: Any
) -> Language:
    """A blank pipeline: a transformer, and crf_ner over its listener."""
    nlp = spacy.blank("xx")
    nlp.add_pipe("transformer", config={"model": transformer_model(bert, window, stride)})
    nlp.add_pipe("crf_ner", config={"model": crf_tagger(encoder, TRANSFORMER_LISTENER), **settings})
    return nlp


def inline_nlp(
    bert: Path, encoder: Encoder = "bilstm", window: int = 128, stride: int = 96, **settings: Any
) -> Language:
    """A blank pipeline with crf_ner alone, over a transformer of its own."""
    return make_nlp(encoder, tok2vec=inline_transformer(bert, window, stride), **settings)


# --- wheels in fresh venvs ---------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def wheel_metadata(wheel: Path) -> str:
    """The METADATA file of a wheel."""
    return subprocess.run(["unzip", "-p", str(wheel), "*/METADATA"], capture_output=True, text=True, check=True).stdout


def venv_with_package(folder: Path, *requirements: str) -> Path:
    """A fresh venv in ``folder`` with this package's wheel and ``requirements``
    installed (from the registry, or files); its Python."""
    dist = folder / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(dist), str(REPO)], check=True
    )
    env_dir = folder / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    package_wheel = next(dist.glob("spacy_bilstm_crf-*.whl"))
    install = [str(python), "-m", "pip", "install", "--quiet", *requirements, str(package_wheel)]
    subprocess.run(install, check=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    return python

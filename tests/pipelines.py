"""Small model settings and pipelines shared by the tests."""

from pathlib import Path
from typing import Any, Dict, Optional

import spacy
from spacy.language import Language


def cnn_tok2vec(width: int = 32, depth: int = 2, embed_size: int = 500) -> Dict[str, Any]:
    """spaCy's CPU tok2vec, small."""
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


def listener_nlp(
    bert: Path, encoder: Dict[str, Any], window: int = 128, stride: int = 96, settings: Optional[Dict] = None
) -> Language:
    """A blank English pipeline: a transformer, and crf_ner over its listener."""
    nlp = spacy.blank("en")
    nlp.add_pipe("transformer", config={"model": transformer_model(bert, window, stride)})
    model = {"@architectures": "spacy-bilstm-crf.CRFTagger.v1", "tok2vec": TRANSFORMER_LISTENER, "encoder": encoder}
    nlp.add_pipe("crf_ner", config={"model": model, **(settings or {})})
    return nlp

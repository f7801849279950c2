"""BiLSTM-CRF and IDCNN-CRF named entity recognition for spaCy.

spaCy finds the ``crf_ner`` factory and the ``spacy-bilstm-crf.*``
architectures through entry points, so user code needs no import. Importing
this package is cheap: the pipeline and the models (and with them torch) load
when they are first used, e.g. ``from spacy_bilstm_crf import CRFEntityRecognizer``.
"""

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "CRFEntityRecognizer": "spacy_bilstm_crf.pipeline.crf_ner",
    "make_crf_ner": "spacy_bilstm_crf.pipeline.crf_ner",
    "CRFTagger_v1": "spacy_bilstm_crf.models.crf_tagger",
    "BiLSTMEncoder_v1": "spacy_bilstm_crf.models.encoders",
    "IDCNNEncoder_v1": "spacy_bilstm_crf.models.encoders",
    "IDCNNEncoder_v2": "spacy_bilstm_crf.models.encoders",
    "NoEncoder_v1": "spacy_bilstm_crf.models.encoders",
    "CharNgramEmbed_v1": "spacy_bilstm_crf.models.char_embed",
    "OnnxCRFTagger_v1": "spacy_bilstm_crf.models.onnx_tagger",
    "export_pipeline": "spacy_bilstm_crf.export",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

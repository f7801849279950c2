"""BiLSTM-CRF and IDCNN-CRF named entity recognition for spaCy.

Importing the package registers the ``crf_ner`` factory and the
``spacy-bilstm-crf.*`` architectures; spaCy also finds them through entry
points, so user code needs no import.
"""

from .layers import BiLSTMEncoder, IDCNNEncoder, NoEncoder, ResidualIDCNNEncoder
from .models import build_crf_tagger
from .pipeline import CRFEntityRecognizer, make_crf_ner

__version__ = "0.1.0"

__all__ = [
    "BiLSTMEncoder",
    "CRFEntityRecognizer",
    "IDCNNEncoder",
    "NoEncoder",
    "ResidualIDCNNEncoder",
    "__version__",
    "build_crf_tagger",
    "make_crf_ner",
]

"""Registered architectures: the CRF tagger, its context encoders and the Chinese character features."""

from .char_embed import CharNgramEmbed_v1
from .crf_tagger import CRFTagger_v1, get_crf
from .encoders import BiLSTMEncoder_v1, IDCNNEncoder_v1, IDCNNEncoder_v2, NoEncoder_v1

__all__ = [
    "BiLSTMEncoder_v1",
    "CharNgramEmbed_v1",
    "CRFTagger_v1",
    "IDCNNEncoder_v1",
    "IDCNNEncoder_v2",
    "NoEncoder_v1",
    "get_crf",
]

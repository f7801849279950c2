"""Plain Thinc layers over the torch modules; the registered architectures
that build them are in :mod:`spacy_bilstm_crf.models`."""

from .crf import (
    CRF,
    NonFiniteScoresError,
    crf_decode,
    crf_kbest,
    crf_marginals,
    crf_span_probs,
    crf_transition_scores,
    set_tag_scheme,
)
from .encoder import torch_sequence_encoder

__all__ = [
    "CRF",
    "NonFiniteScoresError",
    "crf_decode",
    "crf_kbest",
    "crf_marginals",
    "crf_span_probs",
    "crf_transition_scores",
    "set_tag_scheme",
    "torch_sequence_encoder",
]

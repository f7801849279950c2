"""Thinc layers wrapping the torch modules."""

from .bilstm_encoder import BiLSTMEncoder
from .crf import CRF, crf_decode
from .idcnn_encoder import IDCNNEncoder
from .no_encoder import NoEncoder

__all__ = ["BiLSTMEncoder", "CRF", "IDCNNEncoder", "NoEncoder", "crf_decode"]

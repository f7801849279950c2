"""Thinc layers wrapping the torch modules."""

from .bilstm_encoder import BiLSTMEncoder
from .crf import CRF, crf_decode
from .idcnn_encoder import IDCNNEncoder, ResidualIDCNNEncoder
from .no_encoder import NoEncoder

__all__ = ["BiLSTMEncoder", "CRF", "IDCNNEncoder", "NoEncoder", "ResidualIDCNNEncoder", "crf_decode"]

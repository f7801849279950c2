"""Pure PyTorch modules: the CRF and the context encoders."""

from .bilstm import BiLSTM
from .crf import FORBIDDEN, ConditionalRandomField
from .idcnn import IDCNN

__all__ = ["BiLSTM", "ConditionalRandomField", "FORBIDDEN", "IDCNN"]

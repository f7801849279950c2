"""``spacy-bilstm-crf.IDCNNEncoder.v1`` and ``.v2``: iterated dilated convolutions."""

from typing import List

from spacy.util import registry

from ..modules.idcnn import IDCNN
from .encoder import Encoder, torch_sequence_encoder


@registry.architectures("spacy-bilstm-crf.IDCNNEncoder.v2")
def ResidualIDCNNEncoder(
    width: int = 64,
    kernel_size: int = 3,
    dilations: List[int] = [1, 2],
    iterations: int = 2,
    dropout: float = 0.1,
) -> Encoder:
    """Residual iterated dilated CNN context encoder (Strubell et al., 2017,
    with an identity path): a linear input convolution to ``width``, then a
    block of dilated convolutions applied ``iterations`` times with shared
    weights, each adding ``relu(conv(hidden))`` to the hidden state.

    width (int): Output width (filters per convolution).
    kernel_size (int): Odd convolution width.
    dilations (List[int]): Dilation of each convolution of the block.
    iterations (int): How often the block is applied, with shared weights.
    dropout (float): Dropout after each application of the block.
    """
    return _idcnn_encoder(width, kernel_size, dilations, iterations, dropout, residual=True)


@registry.architectures("spacy-bilstm-crf.IDCNNEncoder.v1")
def IDCNNEncoder(
    width: int = 96,
    kernel_size: int = 3,
    dilations: List[int] = [1, 1, 2],
    iterations: int = 3,
    dropout: float = 0.1,
) -> Encoder:
    """Iterated dilated CNN context encoder (Strubell et al., 2017), without
    residual connections: every convolution is followed by a ReLU and
    replaces the hidden state. Superseded by ``IDCNNEncoder.v2``, which trains
    much faster on a transformer.

    width (int): Output width (filters per convolution).
    kernel_size (int): Odd convolution width.
    dilations (List[int]): Dilation of each convolution of the block.
    iterations (int): How often the block is applied, with shared weights.
    dropout (float): Dropout after each application of the block.
    """
    return _idcnn_encoder(width, kernel_size, dilations, iterations, dropout, residual=False)


def _idcnn_encoder(
    width: int, kernel_size: int, dilations: List[int], iterations: int, dropout: float, residual: bool
) -> Encoder:
    if width < 1:
        raise ValueError(f"IDCNNEncoder width must be at least 1, got {width}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"IDCNNEncoder dropout must be in [0, 1), got {dropout}.")
    dilations = list(dilations)
    # Build once here so that bad settings fail when the config is resolved.
    IDCNN(1, 1, kernel_size, dilations, iterations, dropout, residual)
    return torch_sequence_encoder(
        "idcnn_encoder",
        lambda n_in: IDCNN(n_in, width, kernel_size, dilations, iterations, dropout, residual),
        nO=width,
        attrs={
            "width": width,
            "kernel_size": kernel_size,
            "dilations": dilations,
            "iterations": iterations,
            "residual": residual,
        },
    )

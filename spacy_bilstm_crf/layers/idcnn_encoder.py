"""``spacy-bilstm-crf.IDCNNEncoder.v1``: iterated dilated convolutions."""

from typing import List

from spacy.util import registry

from ..modules.idcnn import IDCNN
from .encoder import Encoder, torch_sequence_encoder


@registry.architectures("spacy-bilstm-crf.IDCNNEncoder.v1")
def IDCNNEncoder(
    width: int = 96,
    kernel_size: int = 3,
    dilations: List[int] = [1, 1, 2],
    iterations: int = 3,
    dropout: float = 0.1,
) -> Encoder:
    """Iterated dilated CNN context encoder (Strubell et al., 2017).

    width (int): Output width (filters per convolution).
    kernel_size (int): Odd convolution width.
    dilations (List[int]): Dilation of each convolution of the block.
    iterations (int): How often the block is applied, with shared weights.
    dropout (float): Dropout after each application of the block.
    """
    if width < 1:
        raise ValueError(f"IDCNNEncoder width must be at least 1, got {width}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"IDCNNEncoder dropout must be in [0, 1), got {dropout}.")
    dilations = list(dilations)
    # Build once here so that bad settings fail when the config is resolved.
    IDCNN(1, 1, kernel_size, dilations, iterations, dropout)
    return torch_sequence_encoder(
        "idcnn_encoder",
        lambda n_in: IDCNN(n_in, width, kernel_size, dilations, iterations, dropout),
        nO=width,
        attrs={"width": width, "kernel_size": kernel_size, "dilations": dilations, "iterations": iterations},
    )

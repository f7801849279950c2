"""Registered context encoders: ``spacy-bilstm-crf.BiLSTMEncoder.v1``,
``.IDCNNEncoder.v1``, ``.IDCNNEncoder.v2`` and ``.NoEncoder.v1``.

Each maps per-doc token vectors (T_i, nI) to context vectors (T_i, nO);
``nI`` is inferred from the tok2vec when the pipeline is initialized. The
torch encoders describe their computation in their ``attrs``, for tools such
as ``explain``: ``receptive_field`` (how many tokens one output sees; None:
the whole doc) and ``computation`` (a short description). The
defaults here are the package's defaults: configs that leave a setting out
get these values. For speed and accuracy of each head see docs/benchmarks.md.
"""

from functools import partial
from typing import Any, Dict, List

from spacy.util import registry
from thinc.api import Model, noop
from thinc.types import Floats2d

from ..layers.encoder import Encoder, torch_sequence_encoder
from ..modules.bilstm import BiLSTM
from ..modules.idcnn import IDCNN, receptive_field


def _bilstm(input_width: int, hidden_width: int, depth: int, dropout: float) -> BiLSTM:
    return BiLSTM(input_width, hidden_width, depth, dropout)


def _idcnn(
    input_width: int,
    width: int,
    kernel_size: int,
    dilations: List[int],
    iterations: int,
    dropout: float,
    residual: bool,
) -> IDCNN:
    return IDCNN(input_width, width, kernel_size, dilations, iterations, dropout, residual)


@registry.architectures("spacy-bilstm-crf.BiLSTMEncoder.v1")
def BiLSTMEncoder_v1(hidden_width: int = 128, depth: int = 1, dropout: float = 0.1) -> Encoder:
    """Bidirectional LSTM context encoder, output width ``2 * hidden_width``.

    hidden_width (int): Hidden units per direction.
    depth (int): Number of stacked BiLSTM layers.
    dropout (float): Dropout on the output (and between layers when depth > 1).
    """
    if hidden_width < 1 or depth < 1:
        raise ValueError(f"BiLSTMEncoder needs hidden_width >= 1 and depth >= 1, got {hidden_width} and {depth}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"BiLSTMEncoder dropout must be in [0, 1), got {dropout}.")
    return torch_sequence_encoder(
        "bilstm_encoder",
        partial(_bilstm, hidden_width=hidden_width, depth=depth, dropout=dropout),
        nO=2 * hidden_width,
        attrs={
            "hidden_width": hidden_width,
            "depth": depth,
            "dropout": dropout,
            "receptive_field": None,
            "computation": f"{depth} BiLSTM layer(s), one sequential step per token forward and backward",
        },
    )


@registry.architectures("spacy-bilstm-crf.IDCNNEncoder.v2")
def IDCNNEncoder_v2(
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
def IDCNNEncoder_v1(
    width: int = 96,
    kernel_size: int = 3,
    dilations: List[int] = [1, 1, 2],
    iterations: int = 3,
    dropout: float = 0.1,
) -> Encoder:
    """Strubell et al.'s original iterated dilated CNN, without residual
    connections: every convolution is followed by a ReLU and replaces the
    hidden state. Kept as the reference the benchmark compares
    ``IDCNNEncoder.v2`` (the residual one, recommended) against.

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
    settings: Dict[str, Any] = dict(
        width=width,
        kernel_size=kernel_size,
        dilations=dilations,
        iterations=iterations,
        dropout=dropout,
        residual=residual,
    )
    _idcnn(1, **settings)  # bad settings fail when the config is resolved, not at initialize
    attrs = {key: value for key, value in settings.items() if key != "dropout"}
    attrs["receptive_field"] = receptive_field(kernel_size, dilations, iterations)
    attrs["computation"] = (
        f"{1 + len(dilations) * iterations} convolutions, each over all tokens at once (parallel in time)"
    )
    return torch_sequence_encoder("idcnn_encoder", partial(_idcnn, **settings), nO=width, attrs=attrs)


@registry.architectures("spacy-bilstm-crf.NoEncoder.v1")
def NoEncoder_v1() -> Model[List[Floats2d], List[Floats2d]]:
    """No context encoder: the tagger is tok2vec -> emissions -> CRF (BERT-CRF)."""
    return noop()

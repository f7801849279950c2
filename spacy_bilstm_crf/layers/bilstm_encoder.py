"""``spacy-bilstm-crf.BiLSTMEncoder.v1``: a BiLSTM over token vectors."""

from spacy.util import registry

from ..modules.bilstm import BiLSTM
from .encoder import Encoder, torch_sequence_encoder


@registry.architectures("spacy-bilstm-crf.BiLSTMEncoder.v1")
def BiLSTMEncoder(hidden_width: int = 128, depth: int = 1, dropout: float = 0.1) -> Encoder:
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
        lambda n_in: BiLSTM(n_in, hidden_width, depth, dropout),
        nO=2 * hidden_width,
        attrs={"hidden_width": hidden_width, "depth": depth, "dropout": dropout},
    )

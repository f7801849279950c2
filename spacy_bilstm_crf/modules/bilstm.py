"""A bidirectional LSTM over padded batches of token vectors."""

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class BiLSTM(nn.Module):
    """Stacked bidirectional LSTM; output width ``2 * hidden_width``.

    Padding never leaks into a sequence: rows are packed by their lengths,
    so each row's output equals what the row alone would give.
    """

    def __init__(self, input_width: int, hidden_width: int, depth: int, dropout: float) -> None:
        super().__init__()
        self.lstm = nn.LSTM(
            input_size=input_width,
            hidden_size=hidden_width,
            num_layers=depth,
            bidirectional=True,
            batch_first=True,
            dropout=dropout if depth > 1 else 0.0,
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """inputs: (B, T, input_width); lengths: (B,) int64, all >= 1.
        Returns (B, T, 2 * hidden_width), zero past each row's length."""
        packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
        outputs, _ = self.lstm(packed)
        padded, _ = pad_packed_sequence(outputs, batch_first=True, total_length=inputs.shape[1])
        return self.dropout(padded)

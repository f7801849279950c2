"""A bidirectional LSTM over padded batches of token vectors."""

from typing import List, Tuple

import torch
from torch import Tensor, nn

from ..runtime.batching import length_groups

# A group's fixed cost per time step (its LSTM calls and bookkeeping), in rows
# of work. Measured on 2 CPU cores: about 2 rows; 4 splits a little less often
# and was as fast or faster on MSRA batches (docs/speed.md).
ROW_COST_OF_A_GROUP = 4.0


class BiLSTM(nn.Module):
    """Stacked bidirectional LSTM; output width ``2 * hidden_width``.

    Padding never leaks into a sequence: each row's output equals what the row
    alone would give, and is zero past the row's length.

    The parameters live in one ``nn.LSTM`` (so saved weights keep its names),
    but each direction runs as its own one-layer LSTM over the *padded* batch:
    the forward direction as it is (padding comes after every real token), the
    backward one over each row reversed within its length (so its padding too
    comes last). Rows are sorted by length and run in groups
    (:func:`length_groups`), so that short rows do not step through the
    padding of long ones. On 2 CPU cores this trains 2-3x faster than the same
    LSTM on a ``PackedSequence`` (docs/speed.md); the results are equal.
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
        batch_size, max_length, _ = inputs.shape
        lengths = lengths.to(inputs.device)
        order = torch.argsort(lengths, descending=True)  # (B,) longest first
        sorted_lengths = lengths[order].tolist()
        outputs = []
        for start, end in length_groups(sorted_lengths, ROW_COST_OF_A_GROUP):
            rows = order[start:end]
            group_length = sorted_lengths[start]
            encoded = self._encode(inputs[rows, :group_length], lengths[rows])  # (b, t, 2H)
            outputs.append(nn.functional.pad(encoded, (0, 0, 0, max_length - group_length)))
        restore = torch.argsort(order)  # (B,) inverse permutation
        return self.dropout(torch.cat(outputs, dim=0)[restore])  # (B, T, 2H)

    def forward_for_export(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """``forward`` as one group, without Python control flow over the
        lengths, for tracing (ONNX export): the same outputs, but short rows
        step through the padding of long ones."""
        return self.dropout(self._encode(inputs, lengths.to(inputs.device)))  # (B, T, 2H)

    def _encode(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """Every layer over one group of rows: (b, t, W) -> (b, t, 2H), zero on padding."""
        batch_size, max_length, _ = inputs.shape
        positions = torch.arange(max_length, device=inputs.device).unsqueeze(0)  # (1, t)
        is_real = positions < lengths.unsqueeze(1)  # (b, t)
        # reverse[i, j] = L_i - 1 - j on real positions, j on padding; an involution.
        reverse = torch.where(is_real, lengths.unsqueeze(1) - 1 - positions, positions)  # (b, t)
        state = inputs.new_zeros(1, batch_size, self.lstm.hidden_size)  # (1, b, H)
        layer_input = inputs
        for layer in range(self.lstm.num_layers):
            if layer > 0:
                layer_input = nn.functional.dropout(layer_input, self.lstm.dropout, self.training)
            forward_out = self._run_direction(layer_input, state, self._weights(layer, ""))  # (b, t, H)
            reversed_input = _gather_time(layer_input, reverse)
            backward_out = _gather_time(
                self._run_direction(reversed_input, state, self._weights(layer, "_reverse")), reverse
            )  # (b, t, H)
            layer_input = torch.cat([forward_out, backward_out], dim=2)  # (b, t, 2H)
        return layer_input * is_real.unsqueeze(2).to(layer_input.dtype)

    def _weights(self, layer: int, suffix: str) -> List[Tensor]:
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return [getattr(self.lstm, f"{name}_l{layer}{suffix}") for name in names]

    def _run_direction(self, inputs: Tensor, state: Tensor, weights: List[Tensor]) -> Tensor:
        """One left-to-right, one-layer LSTM pass: (B, T, W) -> (B, T, H)."""
        hx: Tuple[Tensor, Tensor] = (state, state)
        # The op behind nn.LSTM.forward, called with one direction's weights:
        # (input, hx, weights, has_biases, num_layers, dropout, train, bidirectional, batch_first).
        outputs, _, _ = torch.lstm(inputs, hx, weights, True, 1, 0.0, self.training, False, True)
        return outputs


def _gather_time(values: Tensor, index: Tensor) -> Tensor:
    """values: (B, T, W), index: (B, T) -> out[b, t] = values[b, index[b, t]]."""
    return values.gather(1, index.unsqueeze(2).expand(-1, -1, values.shape[2]))

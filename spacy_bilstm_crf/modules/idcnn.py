"""An iterated dilated CNN (Strubell et al., 2017) over padded batches."""

from typing import Sequence

import torch
from torch import Tensor, nn


def receptive_field(kernel_size: int, dilations: Sequence[int], iterations: int) -> int:
    """How many input tokens one output of the IDCNN sees: the input
    convolution reaches ``kernel_size // 2`` tokens to each side and every
    dilated convolution ``dilation * (kernel_size // 2)`` more, on every
    iteration of the block."""
    reach = (kernel_size // 2) * (1 + iterations * sum(dilations))
    return 2 * reach + 1


class IDCNN(nn.Module):
    """Iterated dilated convolutions; output width ``width``.

    An input convolution projects to ``width``; then a block of dilated
    convolutions (one per entry of ``dilations``) is applied ``iterations``
    times with the same weights. Each convolution is "same"-padded and its
    output zeroed past each row's length, so padding never leaks into a row.

    ``residual=False`` is the original stack: every convolution, the input one
    included, is followed by a ReLU and replaces the hidden state. With
    ``residual=True`` the input convolution is a linear projection and each
    dilated convolution adds ``relu(conv(hidden))`` to the hidden state, so
    the tok2vec's features reach the output along an identity path, which
    trains much faster on a transformer (docs/benchmarks.md has the figures).
    """

    def __init__(
        self,
        input_width: int,
        width: int,
        kernel_size: int,
        dilations: Sequence[int],
        iterations: int,
        dropout: float,
        residual: bool = False,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"IDCNN kernel_size must be a positive odd number, got {kernel_size}.")
        if not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"IDCNN dilations must be positive integers, got {list(dilations)}.")
        if iterations < 1:
            raise ValueError(f"IDCNN iterations must be at least 1, got {iterations}.")
        half = kernel_size // 2
        self.input_conv = nn.Conv1d(input_width, width, kernel_size, padding=half)
        self.block = nn.ModuleList(
            nn.Conv1d(width, width, kernel_size, dilation=d, padding=d * half) for d in dilations
        )
        self.iterations = iterations
        self.residual = residual
        # Zeros between packed rows: as wide as the furthest reach of a kernel.
        self.gap = max(dilations) * half
        self.receptive_field = receptive_field(kernel_size, dilations, iterations)
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """inputs: (B, T, input_width); lengths: (B,) int64.
        Returns (B, T, width), zero past each row's length.

        The rows are laid end to end in one sequence, ``gap`` zeros apart, and
        convolved at once: no work is spent on padding, and since every
        convolution's output is zeroed in the gaps and no kernel reaches
        further than ``gap``, each row's output equals the row convolved alone.
        """
        batch_size, max_length, _ = inputs.shape
        lengths = lengths.to(inputs.device)
        positions = torch.arange(max_length, device=inputs.device)
        valid = positions.unsqueeze(0) < lengths.unsqueeze(1)  # (B, T)
        spans = lengths + self.gap  # (B,)
        starts = torch.cumsum(spans, 0) - spans  # (B,) offset of each row in the packed sequence
        packed_index = (starts.unsqueeze(1) + positions.unsqueeze(0))[valid]  # (N,)
        packed_length = int(lengths.sum()) + self.gap * max(batch_size - 1, 0)  # no gap after the last row
        packed = inputs.new_zeros(packed_length, inputs.shape[2])  # (L, input_width)
        packed[packed_index] = inputs[valid]
        mask = inputs.new_zeros(packed.shape[0])
        mask[packed_index] = 1.0
        mask = mask.view(1, 1, -1)  # (1, 1, L)
        hidden = self.input_conv(packed.t().unsqueeze(0)) * mask  # (1, width, L)
        if not self.residual:
            hidden = torch.relu(hidden)
        for _ in range(self.iterations):
            for conv in self.block:
                update = torch.relu(conv(hidden)) * mask  # (1, width, L)
                hidden = hidden + update if self.residual else update
            hidden = self.dropout(hidden)
        outputs = inputs.new_zeros(batch_size, max_length, hidden.shape[1])  # (B, T, width)
        outputs[valid] = hidden[0].t()[packed_index]
        return outputs

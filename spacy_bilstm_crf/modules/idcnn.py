"""An iterated dilated CNN (Strubell et al., 2017) over padded batches."""

from typing import Sequence

import torch
from torch import Tensor, nn


class IDCNN(nn.Module):
    """Iterated dilated convolutions; output width ``width``.

    An input convolution projects to ``width``; then a block of dilated
    convolutions (one per entry of ``dilations``) is applied ``iterations``
    times with the same weights. Each convolution is "same"-padded and its
    output zeroed past each row's length, so padding never leaks into a row.
    """

    def __init__(
        self,
        input_width: int,
        width: int,
        kernel_size: int,
        dilations: Sequence[int],
        iterations: int,
        dropout: float,
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
        self.dropout = nn.Dropout(dropout)

    def forward(self, inputs: Tensor, lengths: Tensor) -> Tensor:
        """inputs: (B, T, input_width); lengths: (B,) int64.
        Returns (B, T, width), zero past each row's length."""
        positions = torch.arange(inputs.shape[1], device=inputs.device)
        mask = (positions.unsqueeze(0) < lengths.to(inputs.device).unsqueeze(1)).unsqueeze(1)  # (B, 1, T)
        mask = mask.to(inputs.dtype)
        hidden = torch.relu(self.input_conv(inputs.transpose(1, 2) * mask)) * mask  # (B, width, T)
        for _ in range(self.iterations):
            for conv in self.block:
                hidden = torch.relu(conv(hidden)) * mask
            hidden = self.dropout(hidden)
        return hidden.transpose(1, 2)  # (B, T, width)

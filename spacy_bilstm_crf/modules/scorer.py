"""The part of a CRF tagger that ``export`` writes as ONNX: the tok2vec's
dense tail (if it has one), the context encoder and the emission layer, as
one module that traces.

The dense tail's modules mirror Thinc's layers on a padded batch (B, T, W)
(see ``models/dense_tail.py`` for the correspondence); ``export`` builds
them from the Thinc layers' weights and checks them against Thinc."""

from typing import List, Optional

import torch
from torch import Tensor, nn

from .bilstm import BiLSTM


class ThincMaxout(nn.Module):
    """Thinc's Maxout: (..., nI) -> (..., nO), the largest of ``nP`` affine pieces."""

    def __init__(self, weights: Tensor, bias: Tensor) -> None:
        super().__init__()
        n_out, n_pieces, n_in = weights.shape  # Thinc's (nO, nP, nI)
        self.n_out, self.n_pieces = n_out, n_pieces
        self.linear = nn.Linear(n_in, n_out * n_pieces)
        with torch.no_grad():
            self.linear.weight.copy_(weights.reshape(n_out * n_pieces, n_in))
            self.linear.bias.copy_(bias.reshape(n_out * n_pieces))

    def forward(self, rows: Tensor) -> Tensor:
        pieces = self.linear(rows)  # (..., nO * nP)
        return pieces.unflatten(-1, (self.n_out, self.n_pieces)).amax(dim=-1)  # (..., nO)


class ThincLayerNorm(nn.Module):
    """Thinc's LayerNorm: over the last axis, variance + 1e-8, then gain and bias."""

    def __init__(self, gain: Tensor, bias: Tensor) -> None:
        super().__init__()
        self.gain = nn.Parameter(gain.clone(), requires_grad=False)
        self.bias = nn.Parameter(bias.clone(), requires_grad=False)

    def forward(self, rows: Tensor) -> Tensor:
        return nn.functional.layer_norm(rows, (rows.shape[-1],), self.gain, self.bias, eps=1e-8)


class Window(nn.Module):
    """Thinc's expand_window: (B, T, W) -> (B, T, (2n + 1) W), each row with
    its ``size`` neighbours either side (zero beyond the ends of axis 1)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, rows: Tensor) -> Tensor:
        length = rows.shape[1]
        padded = nn.functional.pad(rows, (0, 0, self.size, self.size))  # (B, T + 2n, W)
        return torch.cat([padded[:, shift : shift + length] for shift in range(2 * self.size + 1)], dim=2)


class Residual(nn.Module):
    """Thinc's residual: the input plus the layers' output."""

    def __init__(self, layers: List[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, rows: Tensor) -> Tensor:
        return rows + self.layers(rows)


class PaddedDocs(nn.Module):
    """Thinc's with_array(pad=n) over a list of docs, on a padded batch: the
    rows past each doc's length zeroed, ``size`` zero rows either side, the
    layers over every row, the padding dropped. (B, T, W), real (B, T, 1) -> (B, T, W')."""

    def __init__(self, layers: List[nn.Module], size: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)
        self.size = size

    def forward(self, rows: Tensor, real: Tensor) -> Tensor:
        length = rows.shape[1]
        padded = nn.functional.pad(rows * real, (0, 0, self.size, self.size))  # (B, T + 2n, W)
        return self.layers(padded)[:, self.size : self.size + length]


class DenseTail(nn.Module):
    """A tok2vec's dense tail: its blocks in order, (B, T, W), real (B, T, 1) -> (B, T, W')."""

    def __init__(self, blocks: List[PaddedDocs]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, rows: Tensor, real: Tensor) -> Tensor:
        for block in self.blocks:
            rows = block(rows, real)
        return rows


class EmissionScorer(nn.Module):
    """``tail`` (a tok2vec's dense tail; None: none), ``encoder`` (None:
    none), then a linear layer to the tag scores: vectors (B, T, n_in) and
    lengths (B,) -> scores (B, T, K), zero past each row's length. Encoders
    with a ``forward_for_export`` (the BiLSTM) run it, their form without
    Python control flow over the lengths."""

    def __init__(
        self,
        encoder: Optional[nn.Module],
        weights: Tensor,
        bias: Tensor,
        n_in: int,
        tail: Optional[DenseTail] = None,
    ) -> None:
        super().__init__()
        self.tail = tail
        self.encoder = encoder
        self.n_in = n_in
        self.recurrent = isinstance(encoder, BiLSTM)
        self.emission = nn.Linear(weights.shape[1], weights.shape[0])  # (K, nH) weights
        with torch.no_grad():
            self.emission.weight.copy_(weights)
            self.emission.bias.copy_(bias)

    def forward(self, vectors: Tensor, lengths: Tensor) -> Tensor:
        positions = torch.arange(vectors.shape[1], device=vectors.device)
        real = (positions.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2).to(vectors.dtype)  # (B, T, 1)
        hidden = vectors
        if self.tail is not None:
            hidden = self.tail(vectors, real) * real  # (B, T, W), zero past the lengths as Thinc's lists give it
        if self.encoder is not None:
            encode = getattr(self.encoder, "forward_for_export", self.encoder.forward)
            hidden = encode(hidden, lengths)  # (B, T, nH)
        return self.emission(hidden) * real  # (B, T, K)


def trace_to_onnx(module_file: str, path: str, opset: int) -> None:
    """Trace the scorer saved at ``module_file`` (``torch.save`` of an
    :class:`EmissionScorer`, written by ``export`` in its own temporary
    folder) into the ONNX file ``path``, with dynamic batch and length axes."""
    import contextlib
    import io
    import logging
    import warnings

    scorer = torch.load(module_file, weights_only=False)
    vectors = torch.randn(3, 7, scorer.n_in)
    lengths = torch.tensor([7, 4, 1], dtype=torch.long)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            scorer,
            (vectors, lengths),
            input_names=["vectors", "lengths"],
            output_names=["scores"],
            dynamic_shapes=({0: batch, 1: length}, {0: batch}),
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
        if program is None:
            raise RuntimeError("torch.onnx.export returned no program")
        program.save(path, external_data=False)


if __name__ == "__main__":
    import sys

    trace_to_onnx(sys.argv[1], sys.argv[2], int(sys.argv[3]))

"""The part of a CRF tagger that ``export`` writes as ONNX: the context
encoder and the emission layer, as one module that traces."""

from typing import Optional

import torch
from torch import Tensor, nn

from .bilstm import BiLSTM


class EmissionScorer(nn.Module):
    """``encoder`` (None: none) then a linear layer to the tag scores:
    vectors (B, T, n_in) and lengths (B,) -> scores (B, T, K), zero past
    each row's length. Encoders with a ``forward_for_export`` (the BiLSTM)
    run it, their form without Python control flow over the lengths."""

    def __init__(self, encoder: Optional[nn.Module], weights: Tensor, bias: Tensor, n_in: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.n_in = n_in
        self.recurrent = isinstance(encoder, BiLSTM)
        self.emission = nn.Linear(weights.shape[1], weights.shape[0])  # (K, nH) weights
        with torch.no_grad():
            self.emission.weight.copy_(weights)
            self.emission.bias.copy_(bias)

    def forward(self, vectors: Tensor, lengths: Tensor) -> Tensor:
        hidden = vectors
        if self.encoder is not None:
            encode = getattr(self.encoder, "forward_for_export", self.encoder.forward)
            hidden = encode(vectors, lengths)  # (B, T, nH)
        positions = torch.arange(vectors.shape[1], device=vectors.device)
        real = (positions.unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(2)  # (B, T, 1)
        return self.emission(hidden) * real.to(hidden.dtype)  # (B, T, K)


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

"""The shared Thinc layer behind every torch sequence encoder."""

from typing import Any, Callable, Dict, List, Optional, Tuple

from thinc.api import Model
from thinc.types import Floats2d
from torch import nn

from .lazy_torch import lazy_torch_layer
from .sequences import convert_padded_inputs, convert_padded_outputs, forward_non_empty

Encoder = Model[List[Floats2d], List[Floats2d]]


def torch_sequence_encoder(
    name: str, make_module: Callable[[int], nn.Module], nO: int, attrs: Dict[str, Any]
) -> Encoder:
    """A layer mapping per-doc (T_i, nI) arrays to (T_i, nO) arrays with a torch
    module ``make_module(nI)`` whose forward takes padded (B, T, nI) inputs and
    (B,) lengths. ``nI`` is inferred from the first batch seen in ``init``."""
    return lazy_torch_layer(
        name,
        _forward,
        lambda model: make_module(model.get_dim("nI")),
        infer_dims=_infer_input_width,
        convert_inputs=convert_padded_inputs,
        convert_outputs=convert_padded_outputs,
        dims={"nI": None, "nO": nO},
        attrs=attrs,
    )


def _infer_input_width(model: Model, X: Optional[List[Floats2d]], Y: Any) -> None:
    if X is not None and len(X) and not model.has_dim("nI"):
        model.set_dim("nI", X[0].shape[1])


def _forward(model: Model, X: List[Floats2d], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    n_in = model.get_dim("nI")
    for i, x in enumerate(X):
        # Empty docs may come as (0, 0) arrays (transformer listeners do that).
        if len(x) and (x.ndim != 2 or x.shape[1] != n_in):
            raise ValueError(
                f"Layer {model.name!r} expects token vectors of width {n_in}, but doc {i} "
                f"of the batch has vectors of shape {tuple(x.shape)}. The tok2vec's output "
                "width must match the width the pipeline was initialized with: check the "
                "`width` settings of the tok2vec (and of its listener) in the config."
            )
    return forward_non_empty(model, X, is_train, model.get_dim("nO"), n_in)

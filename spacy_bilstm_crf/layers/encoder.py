"""The Thinc layer behind every torch sequence encoder (BiLSTM, IDCNN)."""

from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

from thinc.api import Model
from thinc.types import Floats2d
from torch import nn

from .lazy_torch import lazy_torch_layer
from .sequences import check_vector_widths, convert_padded_inputs, convert_padded_outputs, non_empty, place

Encoder = Model[List[Floats2d], List[Floats2d]]
ModuleForWidth = Callable[[int], nn.Module]


def torch_sequence_encoder(name: str, make_module: ModuleForWidth, nO: int, attrs: Dict[str, Any]) -> Encoder:
    """A layer mapping per-doc (T_i, nI) arrays to (T_i, nO) arrays with the
    torch module ``make_module(nI)``, whose forward takes padded (B, T, nI)
    inputs and (B,) lengths. ``nI`` is inferred from the first non-empty doc
    seen in ``init``. ``make_module`` must pickle (a module-level function or
    a ``functools.partial`` of one)."""
    return lazy_torch_layer(
        name,
        _forward,
        partial(_module_for_input_width, make_module),
        infer_dims=_infer_input_width,
        convert_inputs=convert_padded_inputs,
        convert_outputs=convert_padded_outputs,
        dims={"nI": None, "nO": nO},
        attrs=attrs,
    )


def _module_for_input_width(make_module: ModuleForWidth, model: Model) -> nn.Module:
    return make_module(model.get_dim("nI"))


def _infer_input_width(model: Model, X: Optional[List[Floats2d]], Y: Any) -> None:
    if X is None or model.has_dim("nI"):
        return
    keep = non_empty(X)
    if not keep:
        raise ValueError(
            f"Layer {model.name!r} cannot infer the width of its input: every doc of the "
            f"initialization sample ({len(X)} docs) is empty. Initialize the pipeline with "
            "examples that hold tokens."
        )
    model.set_dim("nI", X[keep[0]].shape[1])


def _forward(model: Model, X: List[Floats2d], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    n_in = model.get_dim("nI")
    n_out = model.get_dim("nO")
    ops = model.ops
    check_vector_widths(
        model,
        X,
        n_in,
        " The tok2vec's output width must match the width the pipeline was initialized with: "
        "check the `width` settings of the tok2vec (and of its listener) in the config.",
    )
    keep = non_empty(X)
    if not keep:
        return [ops.alloc2f(0, n_out) for _ in X], lambda dY: [ops.alloc2f(0, n_in) for _ in dY]
    Y_kept, backprop_kept = model.layers[0]([X[i] for i in keep], is_train)
    Y = place(len(X), keep, Y_kept, lambda _: ops.alloc2f(0, n_out))

    def backprop(dY: List[Floats2d]) -> List[Floats2d]:
        dX_kept = backprop_kept([dY[i] for i in keep])
        return place(len(dY), keep, dX_kept, lambda _: ops.alloc2f(0, n_in))

    return Y, backprop

"""The CRF as a Thinc layer: negative log-likelihood forward, Viterbi decoding.

The layer owns its tag inventory and constraints: :func:`set_tag_scheme`
gives it the tags and their scheme, from which the allowed transitions are
built when the torch module is built (and re-applied whenever they change).
The inventory is kept in the layer's attrs, so it is saved with the model.

Per-token constraints come as ``allowed`` masks: for each doc a (T_i, K) bool
array of the tags each token may take (None: any tag the transitions allow).
"""

from typing import Any, Callable, List, Optional, Sequence, Tuple, cast

import numpy
import torch
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.types import Floats1d, Floats2d, Floats3d, Ints1d, Ints2d

from ..modules.crf import ConditionalRandomField, NonFiniteScoresError, NoValidPathError
from ..tag_scheme import allowed_transitions
from .lazy_torch import lazy_torch_layer, torch_module
from .sequences import lengths_tensor, non_empty, pad_to_torch, padding_mask, place, shim_device

# Per doc: emission scores (T_i, K); the gold tag of each token (-1: unknown);
# optionally the tags each token may take (T_i, K) bool.
AllowedTags = Optional[Sequence[numpy.ndarray]]
CRFInput = Tuple[List[Floats2d], List[Ints1d], AllowedTags]

__all__ = ["CRF", "CRFInput", "NoValidPathError", "NonFiniteScoresError", "crf_decode", "set_tag_scheme"]


def CRF(nO: Optional[int] = None) -> Model[CRFInput, Floats1d]:
    """Linear-chain CRF over ``nO`` tags. The forward pass maps emission scores,
    gold tags and allowed-tag masks to the negative log-likelihood of each doc;
    its backward pass gives the gradient of the emission scores. Decode with
    :func:`crf_decode`."""
    return lazy_torch_layer(
        "crf",
        _forward,
        _make_crf,
        infer_dims=_infer_num_tags,
        convert_inputs=_convert_inputs,
        convert_outputs=_convert_outputs,
        dims={"nO": nO},
        attrs={"tags": [], "scheme": ""},
    )


def set_tag_scheme(model: Model[CRFInput, Floats1d], tags: Sequence[str], scheme: str) -> None:
    """Give the CRF its tag inventory; its transitions are constrained to
    the sequences that are well formed in ``scheme``."""
    if model.has_dim("nO") and model.get_dim("nO") != len(tags):
        raise ValueError(f"The CRF has {model.get_dim('nO')} tags; cannot give it {len(tags)}: {list(tags)[:8]}...")
    model.attrs["tags"] = list(tags)
    model.attrs["scheme"] = scheme
    if model.layers:
        _apply_constraints(model, cast(ConditionalRandomField, torch_module(model)))


def _make_crf(model: Model) -> ConditionalRandomField:
    module = ConditionalRandomField(model.get_dim("nO"))
    _apply_constraints(model, module)
    return module


def _apply_constraints(model: Model, module: ConditionalRandomField) -> None:
    if not model.attrs["tags"]:
        return
    masks = allowed_transitions(model.attrs["tags"], model.attrs["scheme"])
    device = module.transitions.device
    module.set_constraints(*(torch.from_numpy(mask).to(device) for mask in masks))


def crf_decode(
    model: Model[CRFInput, Floats1d], emissions: Sequence[Floats2d], allowed: AllowedTags = None
) -> List[Ints1d]:
    """The best well-formed tag sequence of each doc, within ``allowed``."""
    _check_inputs(model, emissions, None, allowed)
    ops = model.ops
    keep = non_empty(emissions)
    if not keep:
        return [ops.alloc1i(0) for _ in emissions]
    wrapper = model.layers[0]
    module = cast(ConditionalRandomField, torch_module(model))
    lengths = [len(emissions[i]) for i in keep]
    with torch.inference_mode():
        padded = pad_to_torch(wrapper, [emissions[i] for i in keep])  # (B, T, K)
        mask = padding_mask(lengths_tensor(lengths, padded.device), padded.shape[1])  # (B, T)
        allowed_t = _pad_allowed(wrapper, allowed, keep)
        best, _ = module.decode(padded, mask, allowed=allowed_t)  # (B, T)
        best_xp = ops.asarray2i(cast(Ints2d, torch2xp(best.int())))
    rows = [best_xp[row, :length] for row, length in enumerate(lengths)]
    return place(len(emissions), keep, rows, lambda _: ops.alloc1i(0))


def _pad_allowed(wrapper: Model, allowed: AllowedTags, keep: Sequence[int]) -> Optional[torch.Tensor]:
    if allowed is None:
        return None
    rows = [wrapper.ops.asarray(cast(Any, allowed[i]), dtype="int32") for i in keep]
    return pad_to_torch(wrapper, rows).bool()  # (B, T, K); padding rows are False and masked


def _infer_num_tags(model: Model, X: Any, Y: Any) -> None:
    if model.has_dim("nO"):
        return
    if model.attrs["tags"]:
        model.set_dim("nO", len(model.attrs["tags"]))
        return
    if X is not None:
        keep = non_empty(X[0])
        if keep:
            model.set_dim("nO", X[0][keep[0]].shape[1])


def _check_inputs(
    model: Model, emissions: Sequence[Floats2d], tags: Optional[Sequence[Ints1d]], allowed: AllowedTags
) -> None:
    n_tags = model.get_dim("nO")
    for name, other in (("tag sequences", tags), ("allowed-tag masks", allowed)):
        if other is not None and len(other) != len(emissions):
            raise ValueError(f"CRF got {len(emissions)} docs of emission scores but {len(other)} {name}.")
    xp = model.ops.xp
    for i, scores in enumerate(emissions):
        if scores.ndim != 2 or scores.shape[1] != n_tags:
            raise ValueError(f"CRF over {n_tags} tags got emission scores of shape {tuple(scores.shape)} for doc {i}.")
        if tags is not None and len(tags[i]) != len(scores):
            raise ValueError(f"Doc {i} has {len(scores)} emission rows but {len(tags[i])} tags.")
        if allowed is not None and tuple(allowed[i].shape) != tuple(scores.shape):
            raise ValueError(f"Doc {i} has emission scores {scores.shape} but an allowed-tag mask {allowed[i].shape}.")
        if len(scores) and not bool(xp.isfinite(scores).all()):
            raise NonFiniteScoresError(f"The emission scores of doc {i} hold NaN or infinite values.")


def _forward(model: Model, X: CRFInput, is_train: bool) -> Tuple[Floats1d, Callable]:
    emissions, tags, allowed = X
    _check_inputs(model, emissions, tags, allowed)
    ops = model.ops
    n_tags = model.get_dim("nO")
    nll = ops.alloc1f(len(emissions))
    keep = non_empty(emissions)
    if not keep:
        return nll, lambda d_nll: [ops.alloc2f(0, n_tags) for _ in emissions]
    kept_allowed = None if allowed is None else [allowed[i] for i in keep]
    kept_input = ([emissions[i] for i in keep], [tags[i] for i in keep], kept_allowed)
    nll_kept, backprop_kept = model.layers[0](kept_input, is_train)
    keep_index = ops.asarray1i(keep)
    nll[keep_index] = nll_kept

    def backprop(d_nll: Floats1d) -> List[Floats2d]:
        d_kept = backprop_kept(d_nll[keep_index])
        return place(len(emissions), keep, d_kept, lambda _: ops.alloc2f(0, n_tags))

    return nll, backprop


def _convert_inputs(model: Model, X: CRFInput, is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    emissions, tags, allowed = X
    ops = model.ops
    lengths = [len(e) for e in emissions]
    padded = pad_to_torch(model, emissions, requires_grad=is_train)  # (B, T, K)
    mask = padding_mask(lengths_tensor(lengths, shim_device(model)), padded.shape[1])  # (B, T)
    padded_tags = pad_to_torch(model, [ops.asarray1i(t) for t in tags]).long()  # (B, T)
    allowed_t = _pad_allowed(model, allowed, range(len(emissions)))

    def backprop(d_inputs: ArgsKwargs) -> List[Floats2d]:
        return cast(List[Floats2d], ops.unpad(cast(Floats3d, torch2xp(d_inputs.args[0])), lengths))

    return ArgsKwargs(args=(padded, mask, padded_tags), kwargs={"allowed": allowed_t}), backprop


def _convert_outputs(
    model: Model, X_Ytorch: Tuple[CRFInput, torch.Tensor], is_train: bool
) -> Tuple[Floats1d, Callable]:
    _, nll_torch = X_Ytorch  # (B,)

    def backprop(d_nll: Floats1d) -> ArgsKwargs:
        return ArgsKwargs(args=(nll_torch,), kwargs={"grad_tensors": xp2torch(d_nll, device=shim_device(model))})

    return cast(Floats1d, torch2xp(nll_torch)), backprop

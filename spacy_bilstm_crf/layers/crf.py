"""The CRF as a Thinc layer: negative log-likelihood forward, Viterbi decode."""

from typing import Any, Callable, List, Optional, Sequence, Tuple, cast

import torch
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.shims import PyTorchShim
from thinc.types import Floats1d, Floats2d, Floats3d, Ints1d, Ints2d

from ..modules.crf import ConditionalRandomField
from .lazy_torch import lazy_torch_layer, torch_module
from .sequences import lengths_tensor, padding_mask

# Emission scores per doc, and per doc the gold tag of each token (-1: unknown).
CRFInput = Tuple[List[Floats2d], List[Ints1d]]


def CRF(nO: Optional[int] = None) -> Model[CRFInput, Floats1d]:
    """Linear-chain CRF over ``nO`` tags. The forward pass maps emission scores
    and gold tags to the negative log-likelihood of each doc; its backward pass
    gives the gradient of the emission scores (the tags get none). Decode with
    ``crf_decode``."""
    return lazy_torch_layer(
        "crf",
        _forward,
        lambda model: ConditionalRandomField(model.get_dim("nO")),
        infer_dims=_infer_num_tags,
        convert_inputs=_convert_inputs,
        convert_outputs=_convert_outputs,
        dims={"nO": nO},
    )


def crf_decode(
    model: Model[CRFInput, Floats1d],
    emissions: Sequence[Floats2d],
    constraints: Optional[Sequence[Ints1d]] = None,
) -> List[Ints1d]:
    """Best tag sequence per doc. ``constraints[i][t] >= 0`` fixes the tag of
    token t of doc i; -1 leaves it free."""
    _check_inputs(model, emissions, constraints)
    ops = model.ops
    results: List[Ints1d] = [ops.alloc1i(len(e)) for e in emissions]
    keep = [i for i, e in enumerate(emissions) if len(e)]
    if not keep:
        return results
    module = cast(ConditionalRandomField, torch_module(model))
    device = cast(PyTorchShim, model.layers[0].shims[0]).device
    lengths = lengths_tensor([len(emissions[i]) for i in keep], device)
    padded = xp2torch(ops.pad([emissions[i] for i in keep]), device=device)  # (B, T, K)
    mask = padding_mask(lengths, padded.shape[1])  # (B, T)
    tags = None
    if constraints is not None:
        padded_constraints = ops.pad(cast(List[Ints2d], [ops.asarray1i(constraints[i]) for i in keep]))  # (B, T)
        tags = xp2torch(padded_constraints, device=device).long()
    best, _ = module.decode(padded, mask, tags)  # (B, T)
    best_xp = ops.asarray2i(cast(Ints2d, torch2xp(best.int())))
    for row, i in enumerate(keep):
        results[i] = best_xp[row, : len(emissions[i])]
    return results


def _infer_num_tags(model: Model, X: Any, Y: Any) -> None:
    if X is not None and len(X[0]) and not model.has_dim("nO"):
        model.set_dim("nO", X[0][0].shape[1])


def _check_inputs(model: Model, emissions: Sequence[Floats2d], tags: Optional[Sequence[Ints1d]]) -> None:
    n_tags = model.get_dim("nO")
    if tags is not None and len(tags) != len(emissions):
        raise ValueError(f"CRF got {len(emissions)} docs of emission scores but {len(tags)} tag sequences.")
    for i, scores in enumerate(emissions):
        if scores.ndim != 2 or scores.shape[1] != n_tags:
            raise ValueError(f"CRF over {n_tags} tags got emission scores of shape {tuple(scores.shape)} for doc {i}.")
        if tags is not None and len(tags[i]) != len(scores):
            raise ValueError(f"Doc {i} has {len(scores)} emission rows but {len(tags[i])} tags.")


def _forward(model: Model, X: CRFInput, is_train: bool) -> Tuple[Floats1d, Callable]:
    emissions, tags = X
    _check_inputs(model, emissions, tags)
    ops = model.ops
    n_tags = model.get_dim("nO")
    nll = ops.alloc1f(len(emissions))
    keep = [i for i, e in enumerate(emissions) if len(e)]
    if not keep:
        return nll, lambda d_nll: [ops.alloc2f(0, n_tags) for _ in emissions]
    nll_kept, backprop_kept = model.layers[0](([emissions[i] for i in keep], [tags[i] for i in keep]), is_train)
    nll[ops.asarray1i(keep)] = nll_kept

    def backprop(d_nll: Floats1d) -> List[Floats2d]:
        d_emissions = [ops.alloc2f(0, n_tags) for _ in emissions]
        for i, d in zip(keep, backprop_kept(d_nll[ops.asarray1i(keep)])):
            d_emissions[i] = d
        return d_emissions

    return nll, backprop


def _convert_inputs(model: Model, X: CRFInput, is_train: bool) -> Tuple[ArgsKwargs, Callable]:
    emissions, tags = X
    ops = model.ops
    device = cast(PyTorchShim, model.shims[0]).device
    lengths = [len(e) for e in emissions]
    padded = xp2torch(ops.pad(emissions), requires_grad=is_train, device=device)  # (B, T, K)
    mask = padding_mask(lengths_tensor(lengths, device), padded.shape[1])  # (B, T)
    padded_tags = xp2torch(ops.pad(cast(List[Ints2d], [ops.asarray1i(t) for t in tags])), device=device).long()

    def backprop(d_inputs: ArgsKwargs) -> List[Floats2d]:
        return cast(List[Floats2d], ops.unpad(cast(Floats3d, torch2xp(d_inputs.args[0])), lengths))

    return ArgsKwargs(args=(padded, mask, padded_tags), kwargs={}), backprop


def _convert_outputs(
    model: Model, X_Ytorch: Tuple[CRFInput, torch.Tensor], is_train: bool
) -> Tuple[Floats1d, Callable]:
    _, nll_torch = X_Ytorch  # (B,)
    device = cast(PyTorchShim, model.shims[0]).device

    def backprop(d_nll: Floats1d) -> ArgsKwargs:
        return ArgsKwargs(args=(nll_torch,), kwargs={"grad_tensors": xp2torch(d_nll, device=device)})

    return cast(Floats1d, torch2xp(nll_torch)), backprop

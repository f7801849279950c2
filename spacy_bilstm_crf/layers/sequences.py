"""Batching of per-document arrays for torch modules, and back."""

from typing import Any, Callable, List, Sequence, Tuple, cast

import torch
from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.shims import PyTorchShim
from thinc.types import Floats2d, Floats3d


def lengths_tensor(lengths: Sequence[int], device: torch.device) -> torch.Tensor:
    return torch.tensor(list(lengths), dtype=torch.long, device=device)


def padding_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(B,) lengths -> (B, T) bool mask, True on real positions."""
    positions = torch.arange(max_length, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def convert_padded_inputs(
    model: Model, X: List[Floats2d], is_train: bool
) -> Tuple[ArgsKwargs, Callable[[ArgsKwargs], List[Floats2d]]]:
    """List of (T_i, W) arrays, all non-empty -> torch (B, T, W) and (B,) lengths."""
    device = cast(PyTorchShim, model.shims[0]).device
    lengths = [len(x) for x in X]
    padded = xp2torch(model.ops.pad(X), requires_grad=is_train, device=device)  # (B, T, W)

    def backprop(d_inputs: ArgsKwargs) -> List[Floats2d]:
        d_padded = cast(Floats3d, torch2xp(d_inputs.args[0]))
        return cast(List[Floats2d], model.ops.unpad(d_padded, lengths))

    return ArgsKwargs(args=(padded, lengths_tensor(lengths, device)), kwargs={}), backprop


def convert_padded_outputs(
    model: Model, X_Ytorch: Tuple[List[Floats2d], torch.Tensor], is_train: bool
) -> Tuple[List[Floats2d], Callable[[List[Floats2d]], ArgsKwargs]]:
    """torch (B, T, W) -> list of (T_i, W) arrays, cut to the input lengths."""
    X, Ytorch = X_Ytorch
    device = cast(PyTorchShim, model.shims[0]).device
    lengths = [len(x) for x in X]
    Y = cast(List[Floats2d], model.ops.unpad(cast(Floats3d, torch2xp(Ytorch)), lengths))

    def backprop(dY: List[Floats2d]) -> ArgsKwargs:
        d_padded = xp2torch(model.ops.pad(dY), device=device)  # (B, T, W)
        return ArgsKwargs(args=(Ytorch,), kwargs={"grad_tensors": d_padded.to(Ytorch.dtype)})

    return Y, backprop


def forward_non_empty(
    model: Model, X: List[Any], is_train: bool, n_out: int, n_in: int
) -> Tuple[List[Floats2d], Callable[[List[Floats2d]], List[Floats2d]]]:
    """Run ``model.layers[0]`` on the non-empty sequences of ``X`` only, and
    give empty ``(0, n_out)`` outputs (and ``(0, n_in)`` gradients) for the rest."""
    ops = model.ops
    keep = [i for i, x in enumerate(X) if len(x)]
    Y: List[Floats2d] = [ops.alloc2f(0, n_out) for _ in X]
    if not keep:
        return Y, lambda dY: [ops.alloc2f(0, n_in) for _ in dY]
    Y_kept, backprop_kept = model.layers[0]([X[i] for i in keep], is_train)
    for i, y in zip(keep, Y_kept):
        Y[i] = y

    def backprop(dY: List[Floats2d]) -> List[Floats2d]:
        dX: List[Floats2d] = [ops.alloc2f(0, n_in) for _ in dY]
        for i, dx in zip(keep, backprop_kept([dY[i] for i in keep])):
            dX[i] = dx
        return dX

    return Y, backprop

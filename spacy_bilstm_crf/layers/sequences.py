"""Batching of per-document arrays for torch modules, and back.

Empty docs never reach a torch module: :func:`non_empty` picks the rows that
have tokens, :func:`place` puts their results back among placeholders for the
empty ones. Every layer of the package that runs torch on a batch of docs
goes through these two; they need no torch, and this module imports torch
only in the functions that make tensors.
"""

from typing import TYPE_CHECKING, Any, Callable, List, Sequence, Tuple, TypeVar, cast

from thinc.api import ArgsKwargs, Model, torch2xp, xp2torch
from thinc.shims import PyTorchShim
from thinc.types import Floats2d, Floats3d

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def non_empty(items: Sequence[Any]) -> List[int]:
    """Indices of the items that have at least one row."""
    return [i for i, item in enumerate(items) if len(item)]


def place(n_items: int, keep: Sequence[int], values: Sequence[T], empty: Callable[[int], T]) -> List[T]:
    """A list of ``n_items``: ``values`` at the indices ``keep``, ``empty(i)`` elsewhere."""
    out: List[Any] = [None] * n_items
    for i, value in zip(keep, values):
        out[i] = value
    kept = set(keep)
    return [value if i in kept else empty(i) for i, value in enumerate(out)]


def check_vector_widths(model: Model, X: Sequence[Any], n_in: int, hint: str = "") -> None:
    """Raise a ValueError naming the layer and the doc if a non-empty doc's
    vectors are not (T, n_in); empty docs may come as (0, 0) arrays
    (transformer listeners give those)."""
    for i, x in enumerate(X):
        if len(x) and (x.ndim != 2 or x.shape[1] != n_in):
            raise ValueError(
                f"Layer {model.name!r} expects token vectors of width {n_in}, but doc {i} "
                f"of the batch has vectors of shape {tuple(x.shape)}.{hint}"
            )


def shim_device(model: Model) -> "torch.device":
    """The torch device of a PyTorchWrapper layer."""
    return cast(PyTorchShim, model.shims[0]).device


def lengths_tensor(lengths: Sequence[int], device: "torch.device") -> "torch.Tensor":
    import torch

    return torch.tensor(list(lengths), dtype=torch.long, device=device)


def padding_mask(lengths: "torch.Tensor", max_length: int) -> "torch.Tensor":
    """(B,) lengths -> (B, T) bool mask, True on real positions."""
    import torch

    positions = torch.arange(max_length, device=lengths.device)
    return positions.unsqueeze(0) < lengths.unsqueeze(1)


def pad_to_torch(model: Model, X: Sequence[Any], requires_grad: bool = False) -> "torch.Tensor":
    """Per-doc (T_i, ...) arrays, all non-empty -> one (B, T, ...) tensor on the layer's device."""
    return xp2torch(model.ops.pad(list(X)), requires_grad=requires_grad, device=shim_device(model))


def convert_padded_inputs(
    model: Model, X: List[Floats2d], is_train: bool
) -> Tuple[ArgsKwargs, Callable[[ArgsKwargs], List[Floats2d]]]:
    """List of (T_i, W) arrays, all non-empty -> torch (B, T, W) and (B,) lengths."""
    lengths = [len(x) for x in X]
    padded = pad_to_torch(model, X, requires_grad=is_train)  # (B, T, W)

    def backprop(d_inputs: ArgsKwargs) -> List[Floats2d]:
        d_padded = cast(Floats3d, torch2xp(d_inputs.args[0]))
        return cast(List[Floats2d], model.ops.unpad(d_padded, lengths))

    return ArgsKwargs(args=(padded, lengths_tensor(lengths, shim_device(model))), kwargs={}), backprop


def convert_padded_outputs(
    model: Model, X_Ytorch: Tuple[List[Floats2d], "torch.Tensor"], is_train: bool
) -> Tuple[List[Floats2d], Callable[[List[Floats2d]], ArgsKwargs]]:
    """torch (B, T, W) -> list of (T_i, W) arrays, cut to the input lengths."""
    X, Ytorch = X_Ytorch
    lengths = [len(x) for x in X]
    Y = cast(List[Floats2d], model.ops.unpad(cast(Floats3d, torch2xp(Ytorch)), lengths))

    def backprop(dY: List[Floats2d]) -> ArgsKwargs:
        d_padded = pad_to_torch(model, dY)  # (B, T, W)
        return ArgsKwargs(args=(Ytorch,), kwargs={"grad_tensors": d_padded.to(Ytorch.dtype)})

    return Y, backprop

"""Thinc layers that build their PyTorch module once their dims are known.

A torch module needs its sizes when it is constructed, but a Thinc layer
learns them in ``init`` (the tok2vec's width, the number of tags). A lazy
layer builds its ``PyTorchWrapper_v3`` child in ``init``. Before such a layer
can load weights with ``from_bytes``, it must be built from saved dims:
``lazy_layer_dims`` and ``build_lazy_layers`` do that for a whole model.

Everything a lazy layer keeps in ``attrs`` is a module-level function or a
``functools.partial`` of one, so that pipelines pickle (``nlp.pipe`` with
``n_process`` under the spawn start method, ``copy.deepcopy``).

This module imports torch only where it builds or loads a torch layer: the
pipeline reads the saved sizes of a model through it whether or not the
model has torch layers (an exported pipeline has none, and no torch).
"""

import pickle
import re
from io import BytesIO
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, cast

import srsly
from thinc.api import Model, PyTorchWrapper_v3
from thinc.shims import PyTorchShim

if TYPE_CHECKING:
    import torch
    from torch import nn

LAZY_FLAG = "spacy_bilstm_crf_lazy_torch"
# Attrs that do not shape a lazy layer's weights, left out of its description.
UNSHAPING_ATTRS = (LAZY_FLAG, "tags", "scheme", "dropout", "receptive_field", "computation")
ModuleFactory = Callable[[Model], "nn.Module"]
InferDims = Callable[[Model, Any, Any], None]


def lazy_torch_layer(
    name: str,
    forward: Callable,
    make_module: ModuleFactory,
    *,
    infer_dims: InferDims,
    convert_inputs: Callable,
    convert_outputs: Callable,
    dims: Dict[str, Optional[int]],
    attrs: Optional[Dict[str, Any]] = None,
) -> Model:
    """A layer whose torch module ``make_module(model)`` is built in ``init``,
    after ``infer_dims(model, X, Y)`` has set the dims it needs."""
    layer_attrs: Dict[str, Any] = dict(attrs or {})
    layer_attrs.update(
        {
            LAZY_FLAG: True,
            "make_module": make_module,
            "infer_dims": infer_dims,
            "convert_inputs": convert_inputs,
            "convert_outputs": convert_outputs,
        }
    )
    return Model(name, forward, init=_init, dims=dims, attrs=layer_attrs)


def _init(model: Model, X: Any = None, Y: Any = None) -> None:
    if model.layers:
        return
    model.attrs["infer_dims"](model, X, Y)
    missing = [dim for dim in model.dim_names if not model.has_dim(dim)]
    if missing:
        raise ValueError(
            f"Cannot initialize layer {model.name!r}: dims {missing} are unset. "
            "Initialize it with sample input, or set the dims first."
        )
    module = model.attrs["make_module"](model)
    wrapped = PyTorchWrapper_v3(
        module,
        convert_inputs=model.attrs["convert_inputs"],
        convert_outputs=model.attrs["convert_outputs"],
        deserialize_model=load_weights_only,
    )
    model._layers.append(wrapped)


class UnsafeWeightsError(ValueError):
    """Saved torch weights that hold pickled objects other than tensors."""


def load_weights_only(module: "nn.Module", state_bytes: bytes, device: "torch.device") -> "nn.Module":
    """Thinc's deserializer of a wrapped torch module, loading with
    ``weights_only=True`` whatever torch's default (before torch 2.6, or with
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` set, it unpickles anything, and a
    pickle can run code)."""
    import torch

    try:
        state = torch.load(BytesIO(state_bytes), map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported [^.]*? (?=was not)|Unsupported [^.]*", str(exc))
        reason = found.group(0).strip() if found else ""
        raise UnsafeWeightsError(
            "its torch weights hold pickled objects other than tensors, which could run code when loaded: "
            f"refused{f' ({reason})' if reason else ''}."
        ) from None
    module.load_state_dict(state)
    module.to(device)
    return module


def is_lazy_layer(model: Model) -> bool:
    return bool(model.attrs.get(LAZY_FLAG))


def torch_module(model: Model) -> "nn.Module":
    """The torch module of a built lazy layer."""
    if not model.layers:
        raise ValueError(f"Layer {model.name!r} is not initialized yet: call initialize() first.")
    shim = cast(PyTorchShim, model.layers[0].shims[0])
    return shim._model


def lazy_layer_dims(model: Model) -> List[Dict[str, int]]:
    """The dims of each built lazy layer in ``model``, in walk order; an empty
    list when none is built (an uninitialized model)."""
    nodes = [node for node in model.walk() if is_lazy_layer(node)]
    if not any(node.layers for node in nodes):
        return []
    return [{dim: node.get_dim(dim) for dim in node.dim_names if node.has_dim(dim)} for node in nodes]


def build_lazy_layers(model: Model, dims: List[Dict[str, int]]) -> None:
    """Build the unbuilt lazy layers of ``model`` from dims saved by
    ``lazy_layer_dims``, so that ``model.from_bytes`` finds every layer.
    An empty ``dims`` means the model was saved uninitialized: nothing to build."""
    if not dims:
        return
    nodes = [node for node in model.walk() if is_lazy_layer(node)]
    if len(nodes) != len(dims):
        raise ValueError(
            f"the saved settings describe {len(dims)} torch layers but the model built from "
            f"the config has {len(nodes)}: was it saved with a different config?"
        )
    for node, node_dims in zip(nodes, dims):
        if node.layers:
            continue
        for dim, value in node_dims.items():
            node.set_dim(dim, value, force=True)
        node.initialize()


def describe_lazy_layers(model: Model) -> List[str]:
    """Each lazy layer of ``model`` in walk order, as its name and the
    settings that shape its weights: ``bilstm_encoder(hidden_width=128, depth=1)``."""
    return [_describe(node.name, node.attrs) for node in model.walk() if is_lazy_layer(node)]


def describe_saved_lazy_layers(data: bytes) -> List[str]:
    """Like :func:`describe_lazy_layers`, for the model saved as ``data`` by
    ``Model.to_bytes``; raises if ``data`` cannot be decoded."""
    msg = srsly.msgpack_loads(data)
    described = []
    for node, saved_attrs in zip(msg["nodes"], msg["attrs"]):
        attrs = {name: srsly.msgpack_loads(value) for name, value in saved_attrs.items()}
        if attrs.get(LAZY_FLAG):
            described.append(_describe(node["name"], attrs))
    return described


def _describe(name: str, attrs: Dict[str, Any]) -> str:
    settings = [
        f"{key}={value!r}" for key, value in attrs.items() if key not in UNSHAPING_ATTRS and not callable(value)
    ]
    return f"{name}({', '.join(settings)})" if settings else name

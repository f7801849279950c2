"""The emission scores of an exported pipeline: encoder and emission layer
as one ONNX graph, run by onnxruntime, as a Thinc layer.

The graph (written by ``spacy-bilstm-crf export``) takes ``vectors`` (B, T,
nI) float32, the padded token vectors of a batch, and ``lengths`` (B,)
int64, and gives ``scores`` (B, T, nO) float32; batch and length are
dynamic axes. The layer maps per-doc (T_i, nI) arrays to (T_i, nO) arrays,
as the torch encoder and the linear emission layer together do. Empty docs
never reach the graph. A graph whose work grows with the padded length (a
BiLSTM) says so in its metadata (``GROUP_COST_KEY``, the fixed cost of a run
in rows): its rows then run sorted by length, in the groups of
:func:`~spacy_bilstm_crf.runtime.batching.length_groups`, as the torch
BiLSTM runs them.

The graph is an attr of the layer, saved with the model as its ONNX bytes.
A session over it is made when the graph is read (to check it), and again
in a process or under a thread plan it was not made for (a pickled copy
has none), on the threads of the package's policy
(:func:`spacy_bilstm_crf.threads.runtime_threads`), with spinning waits off.
"""

import os
import threading
from typing import Any, Callable, List, Optional, Tuple

import numpy
from thinc.api import Model
from thinc.model import deserialize_attr, serialize_attr
from thinc.types import Floats2d

from ..runtime.batching import length_groups
from ..threads import runtime_threads
from .sequences import check_vector_widths, non_empty, place

LAYER_NAME = "onnx_scorer"
INPUTS = ("vectors", "lengths")
OUTPUT = "scores"
GROUP_COST_KEY = "spacy_bilstm_crf.row_cost_of_a_group"
INSTALL_HINT = "pip install 'spacy-bilstm-crf[onnx]'"


class OnnxGraphError(ValueError):
    """Bytes that are not an ONNX graph of the scorer's contract."""


class OnnxGraph:
    """An ONNX graph of the contract above: its bytes, its widths (read and
    checked when it is made) and a session over it. A session serves the
    process and the thread count it was made for; a forked worker, or a
    new thread plan, gets a new one."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = data
        self.widths: Optional[Tuple[int, int]] = None
        self.group_cost: Optional[float] = None
        self._session: Any = None
        self._made_for: Optional[Tuple[int, Optional[int]]] = None
        self._lock = threading.Lock()
        if data:
            session = self.session()
            self.widths = _graph_widths(session)
            self.group_cost = _group_cost(session)

    def session(self) -> Any:
        made_for = (os.getpid(), runtime_threads())
        with self._lock:
            if self._session is None or self._made_for != made_for:
                self._session = _make_session(self.data, made_for[1])
                self._made_for = made_for
            return self._session

    def __getstate__(self) -> dict:
        return {"data": self.data, "widths": self.widths, "group_cost": self.group_cost}

    def __setstate__(self, state: dict) -> None:
        self.data, self.widths, self.group_cost = state["data"], state["widths"], state["group_cost"]
        self._session, self._made_for, self._lock = None, None, threading.Lock()


@serialize_attr.register(OnnxGraph)
def _serialize_graph(_: OnnxGraph, value: OnnxGraph, name: str, model: Model) -> bytes:
    return value.data


@deserialize_attr.register(OnnxGraph)
def _deserialize_graph(_: OnnxGraph, data: bytes, name: str, model: Model) -> OnnxGraph:
    graph = OnnxGraph(data)
    _set_widths(model, graph)
    return graph


def OnnxScorer(graph: Optional[bytes] = None) -> Model[List[Floats2d], List[Floats2d]]:
    """Per-token scores from an ONNX graph of the contract above (given here,
    set later with :func:`set_graph`, or loaded with the model)."""
    model: Model = Model(LAYER_NAME, _forward, dims={"nI": None, "nO": None}, attrs={"onnx_graph": OnnxGraph()})
    if graph:
        set_graph(model, graph)
    return model


def set_graph(model: Model, graph: bytes) -> None:
    """Give the layer its graph, checked, and its widths."""
    model.attrs["onnx_graph"] = OnnxGraph(graph)
    _set_widths(model, model.attrs["onnx_graph"])


def _set_widths(model: Model, graph: OnnxGraph) -> None:
    if graph.widths is not None:
        model.set_dim("nI", graph.widths[0], force=True)
        model.set_dim("nO", graph.widths[1], force=True)


def _forward(model: Model, X: List[Floats2d], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    if is_train:
        raise ValueError(
            "The ONNX scorer of an exported pipeline predicts only: train the torch pipeline and export it again."
        )
    graph: OnnxGraph = model.attrs["onnx_graph"]
    if not graph.data:
        raise ValueError(f"Layer {model.name!r} has no ONNX graph: load an exported pipeline, or call set_graph().")
    n_in, n_out = model.get_dim("nI"), model.get_dim("nO")
    ops = model.ops
    check_vector_widths(model, X, n_in)
    keep = non_empty(X)
    if not keep:
        return [ops.alloc2f(0, n_out) for _ in X], _no_backprop
    session = graph.session()
    order = sorted(keep, key=lambda i: -len(X[i]))  # longest first
    lengths = [len(X[i]) for i in order]
    groups = [(0, len(order))] if graph.group_cost is None else length_groups(lengths, graph.group_cost)
    scores: dict = {}
    for start, end in groups:
        rows = order[start:end]
        vectors = numpy.zeros((len(rows), lengths[start], n_in), dtype="float32")  # (b, t, nI)
        for row, i in enumerate(rows):
            vectors[row, : len(X[i])] = ops.to_numpy(X[i])
        row_lengths = numpy.asarray(lengths[start:end], dtype="int64")  # (b,)
        (out,) = session.run([OUTPUT], {"vectors": vectors, "lengths": row_lengths})  # (b, t, nO)
        scores.update((i, ops.asarray2f(out[row, : len(X[i])])) for row, i in enumerate(rows))
    return place(len(X), keep, [scores[i] for i in keep], lambda _: ops.alloc2f(0, n_out)), _no_backprop


def _no_backprop(dY: Any) -> Any:
    raise ValueError("The ONNX scorer of an exported pipeline has no backward pass.")


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ImportError(
            f"An exported (ONNX) pipeline runs on onnxruntime, which is not installed: {INSTALL_HINT}"
        ) from None
    return onnxruntime


def _make_session(data: bytes, threads: Optional[int]) -> Any:
    """A CPU session over ``data``; a ValueError in one line if it is not an ONNX graph."""
    ort = _import_onnxruntime()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: its warnings are about the graph, not the user's data
    try:
        return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's errors for damaged graphs are of its own kinds
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxGraphError(f"not a valid ONNX graph ({first[:300]})") from None


def _group_cost(session: Any) -> Optional[float]:
    """The graph's fixed cost of a run in rows, from its metadata; None: run every row at once."""
    value = session.get_modelmeta().custom_metadata_map.get(GROUP_COST_KEY)
    if value is None:
        return None
    try:
        cost = float(value)
    except ValueError:
        cost = -1.0
    if not 0.0 <= cost < float("inf"):
        raise OnnxGraphError(f"the ONNX graph's metadata {GROUP_COST_KEY} is {value!r}; expected a number >= 0.")
    return cost


def _graph_widths(session: Any) -> Tuple[int, int]:
    """(nI, nO) of the graph of ``session``; a ValueError in one line says
    why it is not a graph of the contract above."""
    inputs = {node.name: node for node in session.get_inputs()}
    outputs = {node.name: node for node in session.get_outputs()}
    if sorted(inputs) != sorted(INPUTS) or OUTPUT not in outputs:
        raise OnnxGraphError(
            f"the ONNX graph takes {sorted(inputs)} and gives {sorted(outputs)}; an exported scorer takes "
            f"{sorted(INPUTS)} and gives [{OUTPUT!r}]."
        )
    expected = {"vectors": ("tensor(float)", 3), "lengths": ("tensor(int64)", 1), OUTPUT: ("tensor(float)", 3)}
    nodes = {**inputs, OUTPUT: outputs[OUTPUT]}
    for name, (kind, rank) in expected.items():
        node = nodes[name]
        if node.type != kind or len(node.shape) != rank:
            raise OnnxGraphError(
                f"the ONNX graph's {name!r} is a {node.type} of shape {node.shape}; expected a {kind} of rank {rank}."
            )
    n_in, n_out = nodes["vectors"].shape[-1], nodes[OUTPUT].shape[-1]
    if not (isinstance(n_in, int) and isinstance(n_out, int) and n_in > 0 and n_out > 0):
        raise OnnxGraphError(
            f"the ONNX graph's vectors and scores have widths {n_in!r} and {n_out!r}; expected fixed widths."
        )
    return n_in, n_out

"""``spacy-bilstm-crf export``: a pipeline whose ``crf_ner`` runs without torch.

Each ``crf_ner`` component of the pipeline is rewritten as
``spacy-bilstm-crf.OnnxCRFTagger.v1``: its tok2vec's feature extraction
and embedding tables stay Thinc layers (which run on numpy); the tok2vec's
dense tail (the Maxout layers after the tables, the window encoder: see
``models/dense_tail.py``), the encoder and the emission layer become one
ONNX graph with dynamic batch and length axes (``vectors`` (B, T, nI) and
``lengths`` (B,) in, ``scores`` (B, T, K) out), optionally with int8 dynamic
quantisation of its weights; its CRF becomes its six arrays (scores and
constraint masks). A tok2vec without a dense tail (one that listens to a
tok2vec component) stays whole, and the graph starts at the encoder. The
rest of the pipeline is saved as it is.

Exporting needs torch, ``onnx`` and ``onnxscript`` (the ``[export]`` extra);
the exported pipeline needs only onnxruntime and numpy (``[onnx]``).
Pipelines whose ``crf_ner`` reads a transformer are refused: the transformer
would still need torch (see docs/deploying.md).
"""

import contextlib
import io
import logging
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Union, cast

import numpy
import srsly
import torch
from spacy.language import Language
from spacy.util import registry, split_requirement
from thinc.api import Config, Model
from thinc.types import Floats2d

from .layers.crf_numpy import set_crf
from .layers.lazy_torch import is_lazy_layer, torch_module
from .layers.onnx_scorer import GROUP_COST_KEY, set_graph
from .models.dense_tail import Step, Tok2VecSplit, flattened, front_model, split_tok2vec
from .modules.scorer import (
    DenseTail,
    EmissionScorer,
    PaddedDocs,
    Residual,
    ThincLayerNorm,
    ThincMaxout,
    Window,
)
from .runtime.numpy_crf import NumpyCRF

if TYPE_CHECKING:
    from .pipeline.crf_ner import CRFEntityRecognizer

ONNX_ARCHITECTURE = "spacy-bilstm-crf.OnnxCRFTagger.v1"
OPSET = 18
# The exported graph must give the torch scores to within this (float export).
MAX_EXPORT_ERROR = 1e-4
INSTALL_HINT = "pip install 'spacy-bilstm-crf[export]'"
# The fixed cost of one onnxruntime run of a BiLSTM graph, in rows of work,
# for grouping rows by length (as modules/bilstm.py's ROW_COST_OF_A_GROUP).
ONNX_ROW_COST_OF_A_GROUP = 4.0


class ExportError(ValueError):
    """A pipeline that cannot be exported, or an export that failed its check."""


@contextlib.contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantiser, without its advice on preprocessing (root logger warnings) and prints."""
    root = logging.getLogger()
    level = root.level
    try:
        root.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def export_pipeline(
    nlp: Language, output: Union[str, Path], *, quantize: bool = False, opset: int = OPSET
) -> List[str]:
    """Write ``nlp`` to the new folder ``output`` with each ``crf_ner``
    exported (see the module's docstring); return the names of the exported
    components. ``quantize``: int8 dynamic quantisation of the graph's weights."""
    output = Path(output)
    if output.exists() or output.is_symlink():
        raise ExportError(f"{output} exists: export writes a new folder, give a path that does not exist yet.")
    names = [name for name, pipe in nlp.pipeline if _is_crf_ner(pipe)]
    if not names:
        raise ExportError("the pipeline has no crf_ner component with a torch model (CRFTagger.v1) to export.")
    for name in names:
        _check_exportable(nlp, name)
    exported = {name: _exported_component(nlp, name, quantize, opset) for name in names}
    config = nlp.config.copy()
    for name in names:
        config["components"][name]["model"] = exported[name]["config"]
    meta = dict(nlp.meta)
    replaced = ("torch", "spacy-transformers", "spacy-bilstm-crf")
    kept = [req for req in meta.get("requirements", []) if split_requirement(req)[0] not in replaced]
    meta["requirements"] = sorted({*kept, _runtime_requirement()})
    meta["spacy_bilstm_crf_export"] = {"components": names, "quantized": quantize, "onnx_opset": opset}
    with tempfile.TemporaryDirectory(prefix="spacy-bilstm-crf-export-") as tmp:
        staging = Path(tmp) / "pipeline"
        nlp.to_disk(staging)
        for name in names:
            (staging / name / "model").write_bytes(exported[name]["model"])
            (staging / name / "cfg").write_text(srsly.json_dumps(exported[name]["cfg"], indent=2), encoding="utf8")
        config.to_disk(staging / "config.cfg")
        srsly.write_json(staging / "meta.json", meta)
        shutil.copytree(staging, output, symlinks=True)
    return names


def _is_crf_ner(pipe: Any) -> bool:
    from .pipeline.crf_ner import CRFEntityRecognizer

    return isinstance(pipe, CRFEntityRecognizer) and pipe.model.name == "crf_tagger"


def _check_exportable(nlp: Language, name: str) -> None:
    pipe = cast("CRFEntityRecognizer", nlp.get_pipe(name))
    if not pipe.is_initialized:
        raise ExportError(f"component {name!r} is not trained (not initialized): there is nothing to export.")
    for node in pipe.model.get_ref("tok2vec").walk():
        if "transformer" in node.name:
            raise ExportError(
                f"component {name!r} reads a transformer ({node.name}), which runs on torch: only pipelines "
                "whose crf_ner has a CNN tok2vec (or listens to a tok2vec component) export without torch."
            )


def _exported_component(nlp: Language, name: str, quantize: bool, opset: int) -> Dict[str, Any]:
    """The exported model's config block, its bytes and the component's cfg."""
    pipe = cast("CRFEntityRecognizer", nlp.get_pipe(name))
    model = pipe.model
    split = split_tok2vec(model.get_ref("tok2vec"))
    model_config = {"@architectures": ONNX_ARCHITECTURE, "tok2vec": nlp.config["components"][name]["model"]["tok2vec"]}
    if split.n_tail:
        model_config["tok2vec_layers_in_graph"] = split.n_tail
    exported: Model = registry.resolve(Config({"model": model_config}))["model"]
    in_thinc = front_model(split) if split.n_tail else model.get_ref("tok2vec")
    exported.get_ref("tok2vec").from_bytes(in_thinc.to_bytes())
    graph = onnx_scorer_graph(model, split, quantize=quantize, opset=opset)
    set_graph(exported.get_ref("scorer"), graph)
    set_crf(exported.get_ref("crf"), NumpyCRF.from_arrays(pipe.transition_scores()))
    exported.set_dim("nO", len(pipe.tags))
    cfg = dict(pipe.cfg)
    cfg["torch_layer_dims"] = []
    return {"config": model_config, "model": exported.to_bytes(), "cfg": cfg}


def onnx_scorer_graph(model: Model, split: Tok2VecSplit, *, quantize: bool = False, opset: int = OPSET) -> bytes:
    """The ONNX graph of a CRF tagger's tok2vec tail (that of ``split``),
    encoder and emission layer; the tail checked against Thinc, the graph
    against torch, on random batches (float), before it is returned."""
    _import_export_tools()
    tail = _dense_tail(split) if split.n_tail else None
    if tail is not None:
        _check_tail_matches(model.get_ref("tok2vec"), split, tail)
    scorer = _emission_scorer(model, tail, split).eval()
    with tempfile.TemporaryDirectory(prefix="spacy-bilstm-crf-onnx-") as tmp:
        path = Path(tmp) / "scorer.onnx"
        module_file = Path(tmp) / "scorer.pt"
        torch.save(scorer, module_file)
        # A fresh process for each trace: in torch 2.13 a second export of an
        # LSTM in one process fixes the length axis to the example's length.
        done = subprocess.run(
            [sys.executable, "-m", "spacy_bilstm_crf.modules.scorer", str(module_file), str(path), str(opset)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise ExportError(f"torch.onnx could not trace the encoder and emission layer: {last}")
        _finish_graph(path, ONNX_ROW_COST_OF_A_GROUP if scorer.recurrent else None)
        _check_graph_matches(scorer, path.read_bytes())
        if quantize:
            path = _quantized(path)
        return path.read_bytes()


def _emission_scorer(model: Model, tail: Optional[DenseTail], split: Tok2VecSplit) -> EmissionScorer:
    """A CRF tagger's tok2vec tail, encoder and emission layer as one torch module."""
    encoder_layer = model.get_ref("encoder")
    emission = model.get_ref("emission")
    encoder = torch_module(encoder_layer) if is_lazy_layer(encoder_layer) else None
    n_in = encoder_layer.get_dim("nI") if encoder is not None else emission.get_dim("nI")
    if tail is not None:
        n_in = split.tail_width
    return EmissionScorer(encoder, _tensor(emission, "W"), _tensor(emission, "b"), n_in, tail)  # (K, nH), (K,)


def _tensor(layer: Model, name: str) -> torch.Tensor:
    return torch.from_numpy(numpy.asarray(layer.ops.to_numpy(layer.get_param(name)), dtype="float32"))


def _dense_tail(split: Tok2VecSplit) -> DenseTail:
    """The torch form of ``split``'s tail (its top-level steps are padded blocks)."""
    return DenseTail([cast(PaddedDocs, _torch_step(step)) for step in split.tail])


def _torch_step(step: Step) -> torch.nn.Module:
    children = [_torch_step(child) for child in step.children]
    if step.kind == "padded":
        return PaddedDocs(children, step.size)
    if step.kind == "residual":
        return Residual(children)
    if step.kind == "window":
        return Window(step.size)
    if step.layer is not None and step.kind == "maxout":
        return ThincMaxout(_tensor(step.layer, "W"), _tensor(step.layer, "b"))  # (nO, nP, nI), (nO, nP)
    if step.layer is not None and step.kind == "layernorm":
        return ThincLayerNorm(_tensor(step.layer, "G"), _tensor(step.layer, "b"))  # (nI,), (nI,)
    raise ExportError(f"no torch form for a dense-tail step {step.kind!r}")  # pragma: no cover - split_tok2vec's kinds


def _check_tail_matches(tok2vec: Model, split: Tok2VecSplit, tail: DenseTail) -> None:
    """The torch tail must give Thinc's outputs on random docs (one empty, one of one token)."""
    from thinc.api import Ragged

    generator = numpy.random.default_rng(0)
    lengths = [7, 1, 0, 12, 3]
    width = split.tail_width
    docs = [generator.normal(size=(n, width)).astype("float32") for n in lengths]  # (n, W) each
    value: Any = docs
    if split.front_is_ragged:
        value = Ragged(tok2vec.ops.flatten(cast(List[Floats2d], docs)), tok2vec.ops.asarray1i(lengths))
    for layer in flattened(tok2vec)[-split.n_tail :]:
        value = layer.predict(value)
    vectors = numpy.zeros((len(docs), max(lengths), width), dtype="float32")  # (B, T, W)
    for row, array in enumerate(docs):
        vectors[row, : len(array)] = array
    lengths_tensor = torch.tensor(lengths)
    real = (torch.arange(max(lengths)).unsqueeze(0) < lengths_tensor.unsqueeze(1)).unsqueeze(2).float()  # (B, T, 1)
    with torch.no_grad():
        found = tail.eval()(torch.from_numpy(vectors), real).numpy()  # (B, T, W')
    error = 0.0
    for row, expected in enumerate(value):
        difference = numpy.abs(found[row, : lengths[row]] - tok2vec.ops.to_numpy(expected))
        error = max(error, float(difference.max(initial=0.0)))
    if not error <= MAX_EXPORT_ERROR:
        raise ExportError(f"the tok2vec's dense tail in torch differs from Thinc's by up to {error:.2e} on a batch.")


def _quantized(path: Path) -> Path:
    """int8 dynamic quantisation of the graph at ``path``. The graph is
    constant-folded first (onnxruntime's basic optimisations), so that the
    LSTM's weights are initializers, which the quantiser needs to make it a
    DynamicQuantizeLSTM; the emission layer becomes an integer MatMul."""
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folded, quantized = path.with_name("folded.onnx"), path.with_name("int8.onnx")
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    with _quiet_quantizer():
        quantize_dynamic(str(folded), str(quantized), weight_type=QuantType.QInt8)
    return quantized


def _finish_graph(path: Path, group_cost: Optional[float]) -> None:
    """Declare the scores' length axis dynamic, as it is (the exporter's LSTM
    writes the example's length into the shapes it infers after it; those
    inferred shapes are hints, dropped here, onnxruntime infers its own), and
    write the cost of a run for grouping rows by length (see layers/onnx_scorer.py)."""
    import onnx

    graph = onnx.load(str(path))
    if group_cost is not None:
        entry = graph.metadata_props.add()
        entry.key, entry.value = GROUP_COST_KEY, repr(group_cost)
    del graph.graph.value_info[:]
    for output in graph.graph.output:
        dims = output.type.tensor_type.shape.dim
        for axis, name in ((0, "batch"), (1, "length")):
            dims[axis].Clear()
            dims[axis].dim_param = name
    onnx.save(graph, str(path))


def _check_graph_matches(scorer: EmissionScorer, graph: bytes) -> None:
    """The graph must run on a batch of another size than the trace's and give the module's scores."""
    import onnxruntime

    generator = torch.Generator().manual_seed(0)
    vectors = torch.randn(5, 11, scorer.n_in, generator=generator)
    lengths = torch.tensor([11, 3, 6, 1, 9], dtype=torch.long)
    with torch.no_grad():
        expected = scorer(vectors, lengths).numpy()
    try:
        session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
        (found,) = session.run(["scores"], {"vectors": vectors.numpy(), "lengths": lengths.numpy()})
    except Exception as exc:  # onnxruntime's own error kinds
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"the ONNX graph does not run on a batch of another size: {first}") from None
    error = float(numpy.abs(found - expected).max())
    if not error <= MAX_EXPORT_ERROR:
        raise ExportError(f"the ONNX graph differs from the torch model by up to {error:.2e} on a test batch.")


def _import_export_tools() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"export needs onnx, onnxscript and onnxruntime ({exc.name} is missing): {INSTALL_HINT}"
        ) from None


def _runtime_requirement() -> str:
    from . import __version__

    return f"spacy-bilstm-crf[onnx]>={__version__}"

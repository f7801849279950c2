"""``spacy-bilstm-crf export``: a pipeline whose ``crf_ner`` runs without torch.

Each ``crf_ner`` component of the pipeline is rewritten as
``spacy-bilstm-crf.OnnxCRFTagger.v1``: its tok2vec stays as it is (Thinc's
own layers, which run on numpy); its encoder and emission layer become one
ONNX graph with dynamic batch and length axes (``vectors`` (B, T, nI) and
``lengths`` (B,) in, ``scores`` (B, T, K) out), optionally with int8 dynamic
quantisation of its weights; its CRF becomes its six arrays (scores and
constraint masks). The rest of the pipeline is saved as it is.

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

from .layers.crf_numpy import set_crf
from .layers.lazy_torch import is_lazy_layer, torch_module
from .layers.onnx_scorer import GROUP_COST_KEY, set_graph
from .modules.scorer import EmissionScorer
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
    model_config = {"@architectures": ONNX_ARCHITECTURE, "tok2vec": nlp.config["components"][name]["model"]["tok2vec"]}
    exported: Model = registry.resolve(Config({"model": model_config}))["model"]
    exported.get_ref("tok2vec").from_bytes(model.get_ref("tok2vec").to_bytes())
    graph = onnx_scorer_graph(model, quantize=quantize, opset=opset)
    set_graph(exported.get_ref("scorer"), graph)
    set_crf(exported.get_ref("crf"), NumpyCRF.from_arrays(pipe.transition_scores()))
    exported.set_dim("nO", len(pipe.tags))
    cfg = dict(pipe.cfg)
    cfg["torch_layer_dims"] = []
    return {"config": model_config, "model": exported.to_bytes(), "cfg": cfg}


def onnx_scorer_graph(model: Model, *, quantize: bool = False, opset: int = OPSET) -> bytes:
    """The ONNX graph of a CRF tagger's encoder and emission layer, checked
    against torch on a random batch (float) before it is returned."""
    _import_export_tools()
    scorer = _emission_scorer(model).eval()
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


def _emission_scorer(model: Model) -> EmissionScorer:
    """A CRF tagger's encoder and emission layer as one torch module."""
    encoder_layer = model.get_ref("encoder")
    emission = model.get_ref("emission")
    weights = numpy.asarray(model.ops.to_numpy(emission.get_param("W")), dtype="float32")  # (K, nH)
    bias = numpy.asarray(model.ops.to_numpy(emission.get_param("b")), dtype="float32")  # (K,)
    encoder = torch_module(encoder_layer) if is_lazy_layer(encoder_layer) else None
    n_in = encoder_layer.get_dim("nI") if encoder is not None else weights.shape[1]
    return EmissionScorer(encoder, torch.from_numpy(weights), torch.from_numpy(bias), n_in)


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

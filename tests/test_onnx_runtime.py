"""The layers an exported pipeline runs, on graphs built by hand (no torch
trace): the ONNX scorer's contract, batching and errors, and the numpy CRF
layer against the torch CRF layer. Exports end to end: tests/test_onnx_export.py."""

from typing import List

import numpy
import pytest
from thinc.api import Model

from spacy_bilstm_crf.layers import crf as torch_crf
from spacy_bilstm_crf.layers import crf_numpy
from spacy_bilstm_crf.layers.onnx_scorer import GROUP_COST_KEY, OnnxGraphError, OnnxScorer, set_graph
from spacy_bilstm_crf.runtime.numpy_crf import NumpyCRF
from spacy_bilstm_crf.tag_scheme import make_tags

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

N_IN, N_OUT = 4, 3
WEIGHTS = numpy.arange(N_IN * N_OUT, dtype="float32").reshape(N_IN, N_OUT) / 10.0
BIAS = numpy.asarray([0.5, -0.5, 1.0], dtype="float32")


def linear_graph(group_cost: object = None, n_in: int = N_IN, output: str = "scores") -> bytes:
    """scores = vectors @ WEIGHTS + BIAS, zero past each row's length."""
    nodes = [
        helper.make_node("MatMul", ["vectors", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["linear"]),
        helper.make_node("Shape", ["vectors"], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["length"], axis=0),
        helper.make_node("Range", ["zero", "length", "one"], ["positions"]),
        helper.make_node("Unsqueeze", ["lengths", "one_axis"], ["lengths_column"]),
        helper.make_node("Less", ["positions", "lengths_column"], ["real"]),
        helper.make_node("Cast", ["real"], ["real_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["real_float", "two_axis"], ["mask"]),
        helper.make_node("Mul", ["linear", "mask"], [output]),
    ]
    initializers = [
        numpy_helper.from_array(WEIGHTS[:n_in], "W"),
        numpy_helper.from_array(BIAS, "b"),
        numpy_helper.from_array(numpy.asarray(1, dtype="int64"), "one"),
        numpy_helper.from_array(numpy.asarray(0, dtype="int64"), "zero"),
        numpy_helper.from_array(numpy.asarray([1], dtype="int64"), "one_axis"),
        numpy_helper.from_array(numpy.asarray([2], dtype="int64"), "two_axis"),
    ]
    graph = helper.make_graph(
        nodes,
        "scorer",
        [
            helper.make_tensor_value_info("vectors", TensorProto.FLOAT, ["batch", "length", n_in]),
            helper.make_tensor_value_info("lengths", TensorProto.INT64, ["batch"]),
        ],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", "length", N_OUT])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if group_cost is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = GROUP_COST_KEY, str(group_cost)
    return model.SerializeToString()


def docs(lengths: List[int]) -> List[numpy.ndarray]:
    rng = numpy.random.default_rng(0)
    return [rng.normal(size=(n, N_IN)).astype("float32") for n in lengths]


@pytest.mark.parametrize("group_cost", [None, 0.0, 4.0])
def test_the_scorer_gives_each_doc_its_rows_scores_in_any_grouping(group_cost) -> None:
    scorer = OnnxScorer(linear_graph(group_cost))
    assert (scorer.get_dim("nI"), scorer.get_dim("nO")) == (N_IN, N_OUT)
    X = docs([5, 0, 1, 12, 5, 3])
    Y = scorer.predict(X)
    assert [y.shape for y in Y] == [(5, 3), (0, 3), (1, 3), (12, 3), (5, 3), (3, 3)]
    for x, y in zip(X, Y):
        numpy.testing.assert_allclose(y, x @ WEIGHTS + BIAS, rtol=1e-6, atol=1e-6)
    assert [y.shape for y in scorer.predict([numpy.zeros((0, N_IN), dtype="f")])] == [(0, 3)]


def test_the_scorer_pickles_without_its_session_and_serializes_its_graph() -> None:
    import pickle

    scorer = OnnxScorer(linear_graph(4.0))
    X = docs([3, 7])
    expected = scorer.predict(X)
    copy = pickle.loads(pickle.dumps(scorer))
    assert all(numpy.array_equal(a, b) for a, b in zip(copy.predict(X), expected))
    loaded = OnnxScorer().from_bytes(scorer.to_bytes())
    assert loaded.attrs["onnx_graph"].group_cost == 4.0
    assert all(numpy.array_equal(a, b) for a, b in zip(loaded.predict(X), expected))


@pytest.mark.parametrize(
    "graph, message",
    [
        (b"not a graph at all", "not a valid ONNX graph"),
        (lambda: linear_graph()[:100], "not a valid ONNX graph"),
        (lambda: linear_graph(output="logits"), "gives \\['logits'\\]"),
        (lambda: linear_graph(group_cost="fast"), "expected a number >= 0"),
    ],
)
def test_a_graph_off_the_contract_gets_a_one_line_error(graph, message) -> None:
    data = graph() if callable(graph) else graph
    with pytest.raises(OnnxGraphError, match=message) as caught:
        set_graph(OnnxScorer(), data)
    assert "\n" not in str(caught.value)


def test_the_scorer_refuses_vectors_of_another_width_and_training() -> None:
    scorer = OnnxScorer(linear_graph())
    with pytest.raises(ValueError, match="expects token vectors of width 4, but doc 1"):
        scorer.predict([numpy.zeros((2, 4), "f"), numpy.zeros((2, 5), "f")])
    with pytest.raises(ValueError, match="predicts only"):
        scorer.begin_update(docs([2]))


def trained_torch_crf(tags: List[str], scheme: str) -> Model:
    crf = torch_crf.CRF(nO=len(tags))
    torch_crf.set_tag_scheme(crf, tags, scheme)
    crf.initialize()
    rng = numpy.random.default_rng(1)
    module = crf.layers[0].shims[0]._model
    import torch

    with torch.no_grad():
        for name in ("transitions", "start_transitions", "end_transitions"):
            getattr(module, name).copy_(torch.from_numpy(rng.normal(size=getattr(module, name).shape)))
    return crf


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_the_numpy_crf_layer_answers_as_the_torch_crf_layer(scheme: str) -> None:
    tags = make_tags(["PER", "LOC"], scheme)
    torch_layer = trained_torch_crf(tags, scheme)
    numpy_layer = crf_numpy.NumpyCRFLayer(NumpyCRF.from_arrays(torch_crf.crf_transition_scores(torch_layer)))
    crf_numpy.set_tag_scheme(numpy_layer, tags, scheme)
    rng = numpy.random.default_rng(2)
    emissions = [rng.normal(size=(n, len(tags))).astype("float32") for n in (6, 0, 1, 9)]
    allowed = [numpy.ones((len(e), len(tags)), dtype=bool) for e in emissions]
    allowed[3][2] = False
    allowed[3][2, 0] = True  # token 2 of doc 3 is outside every entity
    for a, b in zip(
        crf_numpy.crf_decode(numpy_layer, emissions, allowed), torch_crf.crf_decode(torch_layer, emissions, allowed)
    ):
        assert a.tolist() == b.tolist()
    for a, b in zip(
        crf_numpy.crf_marginals(numpy_layer, emissions, temperature=1.5),
        torch_crf.crf_marginals(torch_layer, emissions, temperature=1.5),
    ):
        numpy.testing.assert_allclose(a, b, atol=1e-5)
    spans = [[(0, 2, "PER")], [], [(0, 1, "LOC")], [(3, 5, "LOC")]]
    found = crf_numpy.crf_span_probs(numpy_layer, emissions, spans, allowed, threshold=0.2)
    expected = torch_crf.crf_span_probs(torch_layer, emissions, spans, allowed, threshold=0.2)
    assert [[s[:3] for s in doc] for doc in found] == [[s[:3] for s in doc] for doc in expected]
    numpy.testing.assert_allclose([s[3] for d in found for s in d], [s[3] for d in expected for s in d], atol=1e-5)
    for (paths, probs), (t_paths, t_probs) in zip(
        crf_numpy.crf_kbest(numpy_layer, emissions, 4), torch_crf.crf_kbest(torch_layer, emissions, 4)
    ):
        assert paths.tolist() == t_paths.tolist()
        numpy.testing.assert_allclose(probs, t_probs, atol=1e-5)


def test_the_numpy_crf_layer_refuses_constraints_of_another_scheme_and_training() -> None:
    tags = make_tags(["PER"], "BILUO")
    layer = crf_numpy.NumpyCRFLayer(
        NumpyCRF.from_arrays(torch_crf.crf_transition_scores(trained_torch_crf(tags, "BILUO")))
    )
    with pytest.raises(ValueError, match="not those of the BIO scheme"):
        crf_numpy.set_tag_scheme(layer, make_tags(["PER", "LOC"], "BIO")[: len(tags)], "BIO")
    with pytest.raises(ValueError, match="predicts only"):
        layer.begin_update(([], [], None))

"""Encoders and the CRF tagger architecture as Thinc models."""

from typing import List

import numpy
import pytest
import spacy
from spacy.util import registry
from thinc.api import Model, fix_random_seed

from spacy_bilstm_crf.layers.crf import CRF, crf_decode
from spacy_bilstm_crf.models.crf_tagger import get_crf

from .pipelines import ENCODERS, crf_tagger

# The encoders of the other tests, the BiLSTM with two layers here.
LAYERS = {**ENCODERS, "bilstm": {**ENCODERS["bilstm"], "depth": 2}}
INPUT_WIDTH = 10


def output_width(name: str) -> int:
    """The width of the encoder's output for inputs of ``INPUT_WIDTH``."""
    config = LAYERS[name]
    if name == "bilstm":
        return 2 * config["hidden_width"]
    return config.get("width", INPUT_WIDTH)


def resolve(config: dict) -> Model:
    return registry.resolve({"x": config})["x"]


def random_inputs(lengths: List[int], width: int = INPUT_WIDTH) -> List[numpy.ndarray]:
    rng = numpy.random.default_rng(0)
    return [rng.normal(size=(n, width)).astype("f") for n in lengths]


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_encoder_shapes_forward_and_backward(name):
    width = output_width(name)
    fix_random_seed(0)
    encoder = resolve(LAYERS[name])
    X = random_inputs([5, 3, 0, 1])
    encoder.initialize(X=X)
    Y, backprop = encoder.begin_update(X)
    assert [y.shape for y in Y] == [(5, width), (3, width), (0, width), (1, width)]
    dY = [numpy.ones_like(y) for y in Y]
    dX = backprop(dY)
    assert [dx.shape for dx in dX] == [x.shape for x in X]
    if name == "none":  # the identity, forward and backward
        assert all(numpy.array_equal(y, x) for y, x in zip(Y, X))
        assert all(numpy.array_equal(dx, dy) for dx, dy in zip(dX, dY))
    else:
        assert any(numpy.abs(dx).sum() > 0 for dx in dX)


@pytest.mark.parametrize("name", sorted(set(LAYERS) - {"none"}))  # NoEncoder is the identity: no batch to leak
def test_encoder_batched_equals_unbatched(name):
    encoder = resolve(LAYERS[name])
    X = random_inputs([7, 2, 4])
    encoder.initialize(X=X)
    batched = encoder.predict(X)
    for x, y in zip(X, batched):
        numpy.testing.assert_allclose(encoder.predict([x])[0], y, atol=1e-5)


def test_encoder_padding_gets_no_gradient_leak():
    """The gradient of a doc's inputs does not depend on the other docs."""
    encoder = resolve(LAYERS["bilstm"])
    X = random_inputs([6, 2])
    encoder.initialize(X=X)
    _, backprop = encoder.begin_update(X)
    dY = [numpy.ones((6, output_width("bilstm")), dtype="f"), numpy.ones((2, output_width("bilstm")), dtype="f")]
    together = backprop(dY)[1]
    _, backprop_alone = encoder.begin_update([X[1]])
    numpy.testing.assert_allclose(backprop_alone([dY[1]])[0], together, atol=1e-5)


def test_encoder_all_empty_batch():
    encoder = resolve(LAYERS["bilstm"])
    encoder.initialize(X=random_inputs([3]))
    Y, backprop = encoder.begin_update(random_inputs([0, 0]))
    assert [y.shape for y in Y] == [(0, output_width("bilstm"))] * 2
    assert [dx.shape for dx in backprop(Y)] == [(0, INPUT_WIDTH)] * 2


def test_encoder_wrong_width_gives_clear_error():
    encoder = resolve(LAYERS["bilstm"])
    encoder.initialize(X=random_inputs([3], width=10))
    with pytest.raises(ValueError, match=r"expects token vectors of width 10.*doc 1.*\(2, 7\)"):
        encoder.predict(random_inputs([3], width=10) + random_inputs([2], width=7))


@pytest.mark.parametrize(
    "config,message",
    [
        ({"@architectures": "spacy-bilstm-crf.IDCNNEncoder.v1", "kernel_size": 4}, "odd"),
        ({"@architectures": "spacy-bilstm-crf.IDCNNEncoder.v1", "dilations": []}, "dilations"),
        ({"@architectures": "spacy-bilstm-crf.IDCNNEncoder.v2", "iterations": 0}, "iterations"),
        ({"@architectures": "spacy-bilstm-crf.IDCNNEncoder.v2", "width": 0}, "width"),
        ({"@architectures": "spacy-bilstm-crf.BiLSTMEncoder.v1", "dropout": 1.5}, "dropout"),
        ({"@architectures": "spacy-bilstm-crf.BiLSTMEncoder.v1", "hidden_width": 0}, "hidden_width"),
    ],
)
def test_bad_encoder_settings(config, message):
    with pytest.raises(ValueError, match=message):
        resolve(config)


def test_uninitialized_encoder_without_sample_raises():
    encoder = resolve(LAYERS["idcnn"])
    with pytest.raises(ValueError, match=r"dims \['nI'\] are unset"):
        encoder.initialize()


def test_crf_layer_loss_and_decode():
    crf = CRF(nO=3)
    crf.initialize()
    emissions = random_inputs([4, 0, 2], width=3)
    gold = [numpy.array([0, 1, 2, 0], dtype="i"), numpy.zeros((0,), dtype="i"), numpy.array([-1, -1], dtype="i")]
    nll, backprop = crf.begin_update((emissions, gold, None))
    assert nll.shape == (3,) and nll[0] > 0 and nll[1] == 0 and abs(nll[2]) < 1e-5
    d_emissions = backprop(numpy.ones(3, dtype="f"))
    assert [d.shape for d in d_emissions] == [(4, 3), (0, 3), (2, 3)]
    # Rows of the gradient are marginals minus one-hot gold: they sum to zero.
    numpy.testing.assert_allclose(d_emissions[0].sum(axis=1), 0, atol=1e-5)
    decoded = crf_decode(crf, emissions)
    assert [len(d) for d in decoded] == [4, 0, 2]
    assert [int(t) for t in decoded[0]] == [int(i) for i in emissions[0].argmax(axis=1)]  # no transitions yet
    with pytest.raises(ValueError, match="emission scores of shape"):
        crf_decode(crf, random_inputs([2], width=5))


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_tagger_architecture(name):
    fix_random_seed(0)
    tagger = resolve(crf_tagger(LAYERS[name]))
    nlp = spacy.blank("xx")
    docs = [nlp("a b c"), nlp(""), nlp("d")]
    tagger.initialize(X=docs, Y=[numpy.zeros((len(d), 5), dtype="f") for d in docs])
    assert tagger.get_dim("nO") == 5 and get_crf(tagger).get_dim("nO") == 5
    scores, backprop = tagger.begin_update(docs)
    assert [s.shape for s in scores] == [(3, 5), (0, 5), (1, 5)]
    backprop([numpy.ones_like(s) for s in scores])
    for doc, batched in zip(docs, tagger.predict(docs)):
        numpy.testing.assert_allclose(tagger.predict([doc])[0], batched, atol=1e-5)
    # Round trip of a built model through bytes into a built copy.
    copy = resolve(crf_tagger(LAYERS[name]))
    copy.initialize(X=docs, Y=[numpy.zeros((len(d), 5), dtype="f") for d in docs])
    copy.from_bytes(tagger.to_bytes())
    assert copy.to_bytes() == tagger.to_bytes()
    numpy.testing.assert_allclose(copy.predict(docs)[0], tagger.predict(docs)[0])


def _reference_idcnn(module, row, residual: bool):
    """The IDCNN on one unpadded row (1, T, nI), convolution by convolution."""
    import torch

    hidden = module.input_conv(row.transpose(1, 2))
    if not residual:
        hidden = torch.relu(hidden)
    for _ in range(module.iterations):
        for conv in module.block:
            update = torch.relu(conv(hidden))
            hidden = hidden + update if residual else update
    return hidden.transpose(1, 2)[0]


@pytest.mark.parametrize("residual", [False, True])
def test_idcnn_module_matches_a_row_by_row_reference(residual):
    import torch

    from spacy_bilstm_crf.modules.idcnn import IDCNN

    torch.manual_seed(0)
    module = IDCNN(6, 5, 3, [1, 2], 2, dropout=0.0, residual=residual).eval()
    lengths = [7, 3, 1]
    rows = [torch.randn(1, n, 6) for n in lengths]
    padded = torch.zeros(3, 7, 6)
    for i, row in enumerate(rows):
        padded[i, : lengths[i]] = row[0]
    with torch.no_grad():
        outputs = module(padded, torch.tensor(lengths))
        for i, row in enumerate(rows):
            torch.testing.assert_close(outputs[i, : lengths[i]], _reference_idcnn(module, row, residual))
            assert not outputs[i, lengths[i] :].any()


def test_residual_idcnn_has_an_identity_path_from_the_projection():
    """With every dilated convolution switched off (ReLU of a negative bias),
    the output is the linear input projection itself, negative values kept."""
    import torch

    from spacy_bilstm_crf.modules.idcnn import IDCNN

    torch.manual_seed(0)
    module = IDCNN(6, 5, 3, [1, 2], 2, dropout=0.0, residual=True).eval()
    with torch.no_grad():
        for conv in module.block:
            conv.weight.zero_()
            conv.bias.fill_(-1.0)
        inputs = torch.randn(1, 4, 6)
        projection = module.input_conv(inputs.transpose(1, 2)).transpose(1, 2)
        torch.testing.assert_close(module(inputs, torch.tensor([4])), projection)
    assert (projection < 0).any()


def test_idcnn_receptive_field_is_what_the_module_sees():
    import torch

    from spacy_bilstm_crf.modules.idcnn import IDCNN, receptive_field

    torch.manual_seed(0)
    for kernel, dilations, iterations in ((3, [1, 2], 2), (5, [1, 1, 2], 1), (3, [1], 3)):
        module = IDCNN(4, 6, kernel, dilations, iterations, dropout=0.0, residual=True).eval()
        x = torch.randn(1, 61, 4)
        lengths = torch.tensor([61])
        y = module(x, lengths)
        x2 = x.clone()
        x2[0, 30] += 1.0
        changed = (module(x2, lengths) - y).abs().sum(2)[0] > 1e-7
        assert int(changed.sum()) == receptive_field(kernel, dilations, iterations) == module.receptive_field

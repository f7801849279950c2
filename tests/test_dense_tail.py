"""The dense tail of a tok2vec (models/dense_tail.py): where it is cut, and
that its torch form (the one ``export`` traces to ONNX) computes Thinc's
vectors exactly, on spaCy's CNN tok2vec and on the Chinese CharNgramEmbed one.

No ONNX here: tests/test_onnx_export.py exports and compares entities.
"""

from typing import Any, Dict, List

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from thinc.api import Maxout, Model, chain, expand_window, list2ragged, ragged2list, residual, with_array

from spacy_bilstm_crf.models.dense_tail import flattened, front_model, split_tok2vec
from spacy_bilstm_crf.models.onnx_tagger import OnnxCRFTagger_v1

from .pipelines import cnn_tok2vec, make_nlp, train
from .tiny_data import ZH_TRAIN

torch = pytest.importorskip("torch")

CHAR_TOK2VEC: Dict[str, Any] = {
    "@architectures": "spacy.Tok2Vec.v2",
    "embed": {
        "@architectures": "spacy-bilstm-crf.CharNgramEmbed.v1",
        "width": 16,
        "char_rows": 64,
        "bigram_rows": 64,
        "word_rows": 64,
        "position_width": 4,
    },
    "encode": {
        "@architectures": "spacy.MaxoutWindowEncoder.v2",
        "width": 16,
        "depth": 2,
        "window_size": 1,
        "maxout_pieces": 3,
    },
}
MISH_TOK2VEC: Dict[str, Any] = {
    **CHAR_TOK2VEC,
    "encode": {"@architectures": "spacy.MishWindowEncoder.v2", "width": 16, "depth": 1, "window_size": 1},
}
TEXTS = ["张三在北京的微软工作。", "北", "", "李明去了上海和香港，见到了王教授。"]


def trained_tok2vec(lang: str, tok2vec: Dict[str, Any]) -> Model:
    nlp = make_nlp("bilstm", lang=lang, tok2vec=tok2vec)
    train(nlp, steps=3, data=ZH_TRAIN if lang == "zh" else None)  # weights away from their initial values
    return nlp.get_pipe("crf_ner").model.get_ref("tok2vec")


def docs(lang: str) -> List[Doc]:
    nlp = spacy.blank(lang)
    texts = TEXTS if lang == "zh" else ["Alice moved from Paris to London.", "Bob", "", "New York  is big"]
    return [nlp.make_doc(text) for text in texts]


def tail_in_torch(tok2vec: Model, batch: List[Doc]) -> List[numpy.ndarray]:
    """The tok2vec's vectors as an exported graph computes them: the Thinc
    front per doc, padded into a batch, then the torch tail."""
    from spacy_bilstm_crf.export import _dense_tail

    split = split_tok2vec(tok2vec)
    fronts = front_model(split).predict(batch)
    lengths = [len(doc) for doc in batch]
    vectors = numpy.zeros((len(batch), max(lengths), split.tail_width), dtype="float32")  # (B, T, W)
    for row, array in enumerate(fronts):
        assert array.shape == (lengths[row], split.tail_width)
        vectors[row, : lengths[row]] = array
    real = (torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).unsqueeze(2).float()
    with torch.no_grad():
        found = _dense_tail(split).eval()(torch.from_numpy(vectors), real).numpy()  # (B, T, W')
    return [found[row, :length] for row, length in enumerate(lengths)]


@pytest.mark.parametrize(
    "lang,tok2vec,n_tail,width",
    [
        # extract, list2ragged, embed tables, maxout mix | ragged2list, window encoder
        ("xx", cnn_tok2vec(width=16, depth=2), 3, 4 * 16),
        # CharNgramEmbed: its tables (char, 2 bigrams, word, position: 16 + 2 x 16 + 16 + 4 wide), its
        # dropout (no step) and maxout mix | ragged2list, window encoder
        ("zh", CHAR_TOK2VEC, 4, 68),
    ],
)
def test_the_tail_starts_at_the_first_dense_layer_after_the_tables(
    lang: str, tok2vec: Dict[str, Any], n_tail: int, width: int
) -> None:
    model = trained_tok2vec(lang, tok2vec)
    split = split_tok2vec(model)
    assert (split.n_tail, split.front_is_ragged, split.tail_width) == (n_tail, True, width)
    assert [step.kind for step in split.tail] == ["padded", "padded"]
    first, encoder = split.tail
    assert [step.kind for step in first.children] == ["maxout", "layernorm"]  # dropout has no step
    assert first.size == 0  # over the Ragged of all docs: row-wise, no padding
    assert encoder.size == 2  # MaxoutWindowEncoder pads by its receptive field: depth 2 x window 1
    assert all(step.kind == "residual" for step in encoder.children)
    assert split.front == flattened(model)[: -split.n_tail]


@pytest.mark.parametrize("lang,tok2vec", [("xx", cnn_tok2vec(width=16, depth=2)), ("zh", CHAR_TOK2VEC)])
def test_the_torch_tail_gives_thincs_vectors(lang: str, tok2vec: Dict[str, Any]) -> None:
    model = trained_tok2vec(lang, tok2vec)
    batch = docs(lang)
    expected = model.predict(batch)
    found = tail_in_torch(model, batch)
    assert [array.shape for array in found] == [array.shape for array in expected]
    for got, want in zip(found, expected):
        numpy.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-5)
    # A doc's vectors do not depend on the batch it is in (its padding is its own).
    alone = tail_in_torch(model, batch[3:4])[0]
    numpy.testing.assert_allclose(alone, found[3], atol=2e-5, rtol=1e-5)


def test_the_front_gives_an_empty_array_per_doc_for_a_batch_without_tokens() -> None:
    model = trained_tok2vec("zh", CHAR_TOK2VEC)
    front = front_model(split_tok2vec(model))
    assert [array.shape for array in front.predict(docs("zh")[2:3] * 2)] == [(0, 68), (0, 68)]
    assert front.predict([]) == []


def test_a_tok2vec_whose_last_layers_are_not_dense_has_no_tail() -> None:
    model = trained_tok2vec("zh", MISH_TOK2VEC)  # Mish has no torch form here: the tail must end the tok2vec
    assert split_tok2vec(model).n_tail == 0
    with pytest.raises(ValueError, match=r"last 3 layers \(.*ragged2list.*\) are not a dense tail"):
        split_tok2vec(model, 3)
    with pytest.raises(ValueError, match="a tok2vec of 7 layers has no dense tail of 9 layers"):
        split_tok2vec(model, 9)


def test_a_window_wider_than_its_padding_is_left_to_thinc() -> None:
    # with_array(pad=1) over a window of 2: in Thinc the edge rows read the
    # neighbouring doc's rows, which a graph over one padded doc cannot.
    too_wide = with_array(residual(chain(expand_window(window_size=2), Maxout(8, nP=2))), pad=1)
    mix = with_array(Maxout(8, nI=4, nP=2))
    model = chain(list2ragged(), mix, ragged2list(), too_wide)
    model.initialize(X=[numpy.zeros((3, 4), dtype="float32")])
    split = split_tok2vec(model)
    assert split.n_tail == 0
    with pytest.raises(ValueError, match="are not a dense tail"):
        split_tok2vec(model, 1)


def test_an_exported_tagger_with_a_bad_layer_count_names_it() -> None:
    model = trained_tok2vec("zh", CHAR_TOK2VEC)
    with pytest.raises(ValueError, match="no dense tail of 7 layers"):
        OnnxCRFTagger_v1(model, tok2vec_layers_in_graph=7)


def test_export_refuses_a_torch_tail_that_differs_from_thinc() -> None:
    from spacy_bilstm_crf.export import ExportError, _check_tail_matches, _dense_tail

    model = trained_tok2vec("xx", cnn_tok2vec(width=16, depth=2))
    split = split_tok2vec(model)
    tail = _dense_tail(split)
    _check_tail_matches(model, split, tail)  # as built: equal
    with torch.no_grad():
        tail.blocks[1].layers[0].layers[2].gain.add_(0.01)  # the encoder's first LayerNorm, its gain off by 0.01
    with pytest.raises(ExportError, match="dense tail in torch differs from Thinc's by up to"):
        _check_tail_matches(model, split, tail)

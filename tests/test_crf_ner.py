"""The crf_ner component: training, prediction, serialization, errors."""

from typing import Dict, List

import numpy
import pytest
import spacy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import SGD, Config, fix_random_seed

from spacy_bilstm_crf.models.crf_tagger import get_crf
from spacy_bilstm_crf.pipeline.crf_ner import DEFAULT_CRF_NER_MODEL
from spacy_bilstm_crf.tag_scheme import is_valid_sequence

from .pipelines import cnn_tok2vec
from .tiny_data import EN_TRAIN

TOK2VEC = cnn_tok2vec()
ENCODERS = {
    "bilstm": {"@architectures": "spacy-bilstm-crf.BiLSTMEncoder.v1", "hidden_width": 32, "dropout": 0.0},
    "idcnn": {"@architectures": "spacy-bilstm-crf.IDCNNEncoder.v2", "width": 64, "iterations": 2, "dropout": 0.0},
    "idcnn_v1": {"@architectures": "spacy-bilstm-crf.IDCNNEncoder.v1", "width": 64, "iterations": 2, "dropout": 0.0},
    "none": {"@architectures": "spacy-bilstm-crf.NoEncoder.v1"},
}


def ner_config(encoder: str = "bilstm", **settings) -> Dict:
    model = {"@architectures": "spacy-bilstm-crf.CRFTagger.v1", "tok2vec": TOK2VEC, "encoder": ENCODERS[encoder]}
    return {"model": model, **settings}


def make_nlp(encoder: str = "bilstm", **settings) -> Language:
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner", config=ner_config(encoder, **settings))
    return nlp


def examples(nlp: Language, data=EN_TRAIN) -> List[Example]:
    return [Example.from_dict(nlp.make_doc(text), {"entities": ents}) for text, ents in data]


def entities(doc: Doc):
    return [(ent.start_char, ent.end_char, ent.label_) for ent in doc.ents]


def train(nlp: Language, exs: List[Example], steps: int = 60) -> Dict[str, float]:
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: exs)
    losses: Dict[str, float] = {}
    for _ in range(steps):
        losses = nlp.update(exs, sgd=optimizer)
    return losses


@pytest.fixture(scope="module")
def trained() -> Language:
    nlp = make_nlp()
    train(nlp, examples(nlp))
    return nlp


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_overfits_tiny_data(encoder):
    nlp = make_nlp(encoder)
    losses = train(nlp, examples(nlp), steps=80)
    assert losses["crf_ner"] < 0.5
    for text, ents in EN_TRAIN:
        assert entities(nlp(text)) == ents


def test_trains_with_bio_scheme():
    nlp = make_nlp(scheme="BIO")
    train(nlp, examples(nlp))
    assert nlp.get_pipe("crf_ner").tags == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    for text, ents in EN_TRAIN:
        assert entities(nlp(text)) == ents


def test_labels_and_tokens(trained):
    ner = trained.get_pipe("crf_ner")
    assert ner.labels == ("LOC", "ORG", "PER")
    assert ner.label_data == ["LOC", "ORG", "PER"]
    doc = trained("Bob works at Google in London")
    assert [t.ent_iob_ for t in doc] == ["B", "O", "O", "B", "O", "B"]
    assert [t.ent_type_ for t in doc] == ["PER", "", "", "ORG", "", "LOC"]


def test_pipe_equals_call(trained):
    texts = [text for text, _ in EN_TRAIN] * 3 + ["", "Paris", "Alice and Bob went to New York and Paris"]
    piped = [entities(doc) for doc in trained.pipe(texts, batch_size=4)]
    assert piped == [entities(trained(text)) for text in texts]


def test_empty_and_one_token_docs(trained):
    assert entities(trained("")) == []
    assert [d.ents for d in trained.pipe(["", "", ""])] == [(), (), ()]
    assert len(trained("Paris")) == 1
    ner = trained.get_pipe("crf_ner")
    losses = ner.update([Example.from_dict(trained.make_doc(""), {"entities": []})])
    assert losses == {"crf_ner": 0.0}


def test_serialization_round_trips(trained, tmp_path):
    texts = [text for text, _ in EN_TRAIN]
    expected = [entities(doc) for doc in trained.pipe(texts)]
    data = trained.to_bytes()
    from_bytes = make_nlp().from_bytes(data)
    assert from_bytes.to_bytes() == data
    assert from_bytes.get_pipe("crf_ner").labels == ("LOC", "ORG", "PER")
    assert [entities(doc) for doc in from_bytes.pipe(texts)] == expected
    trained.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.to_bytes() == data
    assert [entities(loaded(text)) for text in texts] == expected
    ner_bytes = trained.get_pipe("crf_ner").to_bytes()
    fresh = make_nlp().get_pipe("crf_ner").from_bytes(ner_bytes)
    assert fresh.to_bytes() == ner_bytes


def test_scores_like_ner(trained):
    scores = trained.evaluate(examples(trained))
    assert scores["ents_f"] == 1.0 and scores["ents_p"] == 1.0 and scores["ents_r"] == 1.0
    assert set(scores["ents_per_type"]) == {"PER", "LOC", "ORG"}
    assert trained.config["components"]["crf_ner"]["scorer"] == {"@scorers": "spacy.ner_scorer.v1"}


def test_default_model_is_the_registered_defaults():
    """The component's default model is the CPU BiLSTM-CRF with the encoder's own
    defaults (one source for hyperparameters), and it learns the tiny data."""
    from inspect import signature

    from spacy_bilstm_crf.models.encoders import BiLSTMEncoder_v1

    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner")
    encoder = nlp.config["components"]["crf_ner"]["model"]["encoder"]
    defaults = {name: p.default for name, p in signature(BiLSTMEncoder_v1).parameters.items()}
    assert encoder == {"@architectures": "spacy-bilstm-crf.BiLSTMEncoder.v1", **defaults}
    assert Config().from_str(DEFAULT_CRF_NER_MODEL)["model"]["encoder"] == {
        "@architectures": "spacy-bilstm-crf.BiLSTMEncoder.v1"
    }
    train(nlp, examples(nlp), steps=40)
    assert entities(nlp("Alice lives in Paris")) == [(0, 5, "PER"), (15, 20, "LOC")]


def test_missing_annotation_adds_no_loss():
    nlp = make_nlp()
    exs = examples(nlp)
    nlp.initialize(lambda: exs)
    ner = nlp.get_pipe("crf_ner")
    unannotated = Example(nlp.make_doc("Alice lives in Paris"), nlp.make_doc("Alice lives in Paris"))
    scores = ner.model.predict([unannotated.predicted])
    loss, d_scores = ner.get_loss([unannotated], scores)
    assert loss == pytest.approx(0.0, abs=1e-4)
    assert numpy.abs(d_scores[0]).max() < 1e-4
    # Partial: only "Alice" is annotated; the other tokens are missing, not O.
    partial = Example.from_dict(nlp.make_doc("Alice lives in Paris"), {"entities": ["U-PER", "-", "-", "-"]})
    assert ner._gold_tags(partial, 0).tolist() == [ner.tags.index("U-PER"), -1, -1, -1]
    full = Example.from_dict(nlp.make_doc("Alice lives in Paris"), {"entities": ["U-PER", "O", "O", "O"]})
    partial_loss, _ = ner.get_loss([partial], scores)
    full_loss, _ = ner.get_loss([full], scores)
    assert 0 < partial_loss < full_loss


def test_preset_entities_are_kept_or_overwritten(trained):
    ruler_nlp = make_nlp()
    ruler_nlp.from_bytes(trained.to_bytes())
    ruler = ruler_nlp.add_pipe("entity_ruler", before="crf_ner")
    ruler.add_patterns([{"label": "ORG", "pattern": "Paris"}, {"label": "PRODUCT", "pattern": "Bob"}])
    doc = ruler_nlp("Bob works at Google in Paris")
    # Preset entities stay, of known and unknown labels; the rest is predicted around them.
    assert entities(doc) == [(0, 3, "PRODUCT"), (13, 19, "ORG"), (23, 28, "ORG")]
    ruler_nlp.get_pipe("crf_ner").cfg["overwrite_ents"] = True
    assert entities(ruler_nlp("Bob works at Google in Paris")) == [(0, 3, "PER"), (13, 19, "ORG"), (23, 28, "LOC")]


def test_head_lr_scale_scales_head_updates_only():
    def one_update(scale: float):
        nlp = make_nlp(head_lr_scale=scale)
        exs = examples(nlp)
        fix_random_seed(0)
        nlp.initialize(lambda: exs)
        ner = nlp.get_pipe("crf_ner")
        emission = ner.model.get_ref("emission")
        tok2vec_node = next(n for n in ner.model.get_ref("tok2vec").walk() if n.has_param("E"))
        before = (emission.get_param("W").copy(), tok2vec_node.get_param("E").copy())
        ner.update(exs, sgd=SGD(0.001))
        return emission.get_param("W") - before[0], tok2vec_node.get_param("E") - before[1]

    head_1, tok2vec_1 = one_update(1.0)
    head_10, tok2vec_10 = one_update(10.0)
    assert numpy.abs(head_1).max() > 0
    numpy.testing.assert_allclose(head_10, 10 * head_1, rtol=1e-3, atol=1e-6)
    numpy.testing.assert_allclose(tok2vec_10, tok2vec_1, rtol=1e-5, atol=1e-9)


def test_unknown_factory_setting_is_rejected():
    nlp = spacy.blank("en")
    with pytest.raises(Exception, match="extra fields not permitted|not permitted|unexpected"):
        nlp.add_pipe("crf_ner", config={"hidden_width": 64})


def test_bad_settings_give_clear_errors():
    with pytest.raises(ValueError, match="Unknown tag scheme 'IOB'"):
        make_nlp(scheme="IOB")
    with pytest.raises(ValueError, match="head_lr_scale must be positive"):
        make_nlp(head_lr_scale=0.0)


def test_wrong_nO_in_config():
    nlp = spacy.blank("en")
    config = ner_config()
    config["model"]["nO"] = 5
    nlp.add_pipe("crf_ner", config=config)
    with pytest.raises(ValueError, match="nO is 5.*13 tags"):
        nlp.initialize(lambda: examples(nlp))


def test_listener_width_mismatch_gives_clear_error():
    nlp = spacy.blank("en")
    tok2vec = dict(TOK2VEC)
    nlp.add_pipe("tok2vec", config={"model": tok2vec})
    listener = {"@architectures": "spacy.Tok2VecListener.v1", "width": 16, "upstream": "*"}
    model = {"@architectures": "spacy-bilstm-crf.CRFTagger.v1", "tok2vec": listener, "encoder": ENCODERS["bilstm"]}
    nlp.add_pipe("crf_ner", config={"model": model})
    nlp.initialize(lambda: examples(nlp))
    with pytest.raises(ValueError, match="expects token vectors of width 16.*shape \\(4, 32\\)"):
        nlp("Alice lives in Paris")


def test_unknown_gold_label_is_an_error_not_a_silent_drop():
    nlp = make_nlp()
    exs = examples(nlp)
    nlp.get_pipe("crf_ner").initialize(lambda: exs, nlp=nlp, labels=["PER", "LOC"])
    with pytest.raises(ValueError, match="Training example 1 .*labelled 'ORG'.*not a label"):
        nlp.update(exs)


def test_initialize_with_given_labels_and_add_label_after_init():
    nlp = make_nlp()
    ner = nlp.get_pipe("crf_ner")
    ner.initialize(lambda: examples(nlp), nlp=nlp, labels=["PER", "LOC", "ORG", "MISC"])
    assert ner.labels == ("PER", "LOC", "ORG", "MISC")
    assert get_crf(ner.model).get_dim("nO") == 17
    with pytest.raises(ValueError, match="already initialized"):
        ner.add_label("EVENT")


def test_no_labels_is_an_error():
    nlp = make_nlp()
    exs = examples(nlp, data=[("nothing here", [])])
    with pytest.raises(ValueError, match="has no entity labels"):
        nlp.initialize(lambda: exs)


def test_nan_loss_raises():
    nlp = make_nlp()
    exs = examples(nlp)
    nlp.initialize(lambda: exs)
    emission = nlp.get_pipe("crf_ner").model.get_ref("emission")
    emission.set_param("W", emission.get_param("W") * numpy.nan)
    with pytest.raises(ValueError, match="NaN"):
        nlp.update(exs)


def test_annotations_are_valid_spans_for_any_weights():
    """Untrained weights still give well-formed entities (constrained decoding)."""
    nlp = make_nlp()
    exs = examples(nlp)
    fix_random_seed(1)
    nlp.initialize(lambda: exs)
    tags = nlp.get_pipe("crf_ner").tags
    for doc, ids in zip(
        nlp.pipe(["a b c d e f g h i j k l m n o p"] * 3),
        nlp.get_pipe("crf_ner").predict([nlp.make_doc("a b c d e f g h i j k l m n o p")] * 3).tag_ids,
    ):
        assert is_valid_sequence([tags[i] for i in ids], "BILUO")
        for ent in doc.ents:
            assert ent.label_ in ("LOC", "ORG", "PER")


@pytest.mark.parametrize("scheme", ["BILUO", "BIO", "BIOES"])
def test_gold_tags_in_each_scheme_and_unknown_label_error(scheme):
    """Gold tag ids follow the scheme's inventory (-1 where the annotation is
    missing), and a gold entity of a label the component lacks is named."""
    nlp = make_nlp(scheme=scheme)
    ner = nlp.get_pipe("crf_ner")
    ner.add_label("PER")
    ner.add_label("LOC")
    nlp.initialize()
    doc = nlp.make_doc("Alice met Bob Smith in Paris")
    eg = Example.from_dict(doc, {"entities": ["U-PER", "O", "B-PER", "L-PER", "-", "U-LOC"]})
    tags = ner.tags
    expected = {
        "BILUO": ["U-PER", "O", "B-PER", "L-PER", None, "U-LOC"],
        "BIO": ["B-PER", "O", "B-PER", "I-PER", None, "B-LOC"],
        "BIOES": ["S-PER", "O", "B-PER", "E-PER", None, "S-LOC"],
    }[scheme]
    got = ner._gold_tags(eg, 0).tolist()
    assert got == [-1 if tag is None else tags.index(tag) for tag in expected]
    bad = Example.from_dict(nlp.make_doc("Alice works at Acme"), {"entities": ["U-PER", "O", "O", "U-ORG"]})
    with pytest.raises(ValueError, match=r"Training example 3 \('Alice works at Acme'\).*labelled 'ORG'"):
        ner._gold_tags(bad, 3)
    with pytest.raises(ValueError, match=r"labelled 'ORG'.*not a label of component 'crf_ner'"):
        nlp.update([eg, bad])

"""The crf_ner component: training, prediction, decoding rules, serialization, errors."""

from typing import List

import numpy
import pytest
import spacy
import torch
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from thinc.api import SGD, Config, fix_random_seed

from spacy_bilstm_crf.layers.lazy_torch import torch_module
from spacy_bilstm_crf.models.crf_tagger import get_crf
from spacy_bilstm_crf.pipeline.crf_ner import DEFAULT_CRF_NER_MODEL
from spacy_bilstm_crf.tag_scheme import is_valid_sequence

from .pipelines import ENCODERS, TOK2VEC, char_entities, cnn_tok2vec, crf_tagger, entities, examples, make_nlp, train
from .tiny_data import EN_TRAIN

WORDS = "Alice Bob Smith Paris London Google ran lives in works at the big New York and".split()
# Whitespace-only tokens: runs of spaces, newlines, tabs, and text made of them alone.
WHITESPACE_TEXTS = [
    "\n",
    " ",
    "\t\n ",
    "Alice  lives in\n\nParis",
    "Bob \n works at  Google \t in London\n",
    "\n\nNew York is big  \n",
    "Alice\tBob  Smith \n\n Paris",
]


def favour_entities(nlp: Language, bonus: float = 20.0) -> None:
    """Raise the emission score of every entity tag, so that without the
    decoding rules most tokens would be tagged as (long) entities."""
    ner = nlp.get_pipe("crf_ner")
    emission = ner.model.get_ref("emission")
    bias = emission.get_param("b").copy()
    bias[[i for i, tag in enumerate(ner.tags) if tag != "O"]] += bonus
    emission.set_param("b", bias)


def favour_continuing(nlp: Language, bonus: float = 50.0) -> None:
    """Raise the CRF's score of every transition that continues an entity."""
    tags = nlp.get_pipe("crf_ner").tags
    transitions = torch_module(get_crf(nlp.get_pipe("crf_ner").model)).transitions
    with torch.no_grad():
        for i, before in enumerate(tags):
            for j, after in enumerate(tags):
                if before[:2] in ("B-", "I-") and after[:2] in ("I-", "L-") and before[2:] == after[2:]:
                    transitions[i, j] += bonus


# --- training and prediction -----------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_overfits_tiny_data(encoder):
    nlp = make_nlp(encoder, head_lr_scale=5.0)
    losses = train(nlp, steps=80)
    assert losses[-1] < 0.5
    for text, ents in EN_TRAIN:
        assert char_entities(nlp(text)) == ents


@pytest.mark.slow
def test_trains_with_bio_scheme():
    nlp = make_nlp(scheme="BIO")
    train(nlp, steps=60)
    assert nlp.get_pipe("crf_ner").tags == ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    for text, ents in EN_TRAIN:
        assert char_entities(nlp(text)) == ents


def test_labels_and_tokens(trained_pipeline):
    ner = trained_pipeline.get_pipe("crf_ner")
    assert ner.labels == ("LOC", "ORG", "PER")
    assert ner.label_data == ["LOC", "ORG", "PER"]
    doc = trained_pipeline("Bob works at Google in London")
    assert [t.ent_iob_ for t in doc] == ["B", "O", "O", "B", "O", "B"]
    assert [t.ent_type_ for t in doc] == ["PER", "", "", "ORG", "", "LOC"]


def test_pipe_equals_call(trained_pipeline):
    texts = [text for text, _ in EN_TRAIN] * 3 + ["", "Paris", "Alice and Bob went to New York and Paris"]
    piped = [char_entities(doc) for doc in trained_pipeline.pipe(texts, batch_size=4)]
    assert piped == [char_entities(trained_pipeline(text)) for text in texts]


def test_pipe_batch_size_1_equals_64(trained_pipeline):
    """Batching does not change predictions (padding never leaks)."""
    texts = [text for text, _ in EN_TRAIN] * 2 + ["", "Paris", "\n", "Alice and Bob went to New York and Paris"]
    texts += WHITESPACE_TEXTS + [" ".join(WORDS * 4)]
    one = [entities(doc) for doc in trained_pipeline.pipe(texts, batch_size=1)]
    assert any(one)
    assert [entities(doc) for doc in trained_pipeline.pipe(texts, batch_size=64)] == one


def test_empty_and_one_token_docs(trained_pipeline):
    assert char_entities(trained_pipeline("")) == []
    assert [d.ents for d in trained_pipeline.pipe(["", "", ""])] == [(), (), ()]
    assert len(trained_pipeline("Paris")) == 1
    ner = trained_pipeline.get_pipe("crf_ner")
    losses = ner.update([Example.from_dict(trained_pipeline.make_doc(""), {"entities": []})])
    assert losses == {"crf_ner": 0.0}


def test_serialization_round_trips(trained_pipeline, tmp_path):
    texts = [text for text, _ in EN_TRAIN]
    expected = [char_entities(doc) for doc in trained_pipeline.pipe(texts)]
    data = trained_pipeline.to_bytes()
    from_bytes = make_nlp().from_bytes(data)
    assert from_bytes.to_bytes() == data
    assert from_bytes.get_pipe("crf_ner").labels == ("LOC", "ORG", "PER")
    assert [char_entities(doc) for doc in from_bytes.pipe(texts)] == expected
    trained_pipeline.to_disk(tmp_path / "pipeline")
    loaded = spacy.load(tmp_path / "pipeline")
    assert loaded.to_bytes() == data
    assert [char_entities(loaded(text)) for text in texts] == expected
    ner_bytes = trained_pipeline.get_pipe("crf_ner").to_bytes()
    fresh = make_nlp().get_pipe("crf_ner").from_bytes(ner_bytes)
    assert fresh.to_bytes() == ner_bytes


@spacy.registry.scorers("test.examples_scorer.v1")
def make_examples_scorer():
    def score(examples, **kwargs):
        return {"examples": len(examples), "predicted_ents": sum(len(eg.predicted.ents) for eg in examples)}

    return score


def test_evaluate_scores_the_predictions_with_the_scorer_setting(trained_pipeline):
    """`nlp.evaluate` scores crf_ner's predictions, not the gold: spaCy's NER
    scorer by default, or the scorer that the `scorer` setting names."""
    assert trained_pipeline.config["components"]["crf_ner"]["scorer"] == {"@scorers": "spacy.ner_scorer.v1"}
    # The gold of EN_TRAIN, but for "Alice" of the first sentence: an ORG there.
    assert EN_TRAIN[0] == ("Alice lives in Paris", [(0, 5, "PER"), (15, 20, "LOC")])
    gold = [("Alice lives in Paris", [(0, 5, "ORG"), (15, 20, "LOC")]), *EN_TRAIN[1:]]
    scores = trained_pipeline.evaluate(examples(trained_pipeline, gold))
    assert (scores["ents_p"], scores["ents_r"]) == (7 / 8, 7 / 8)  # it predicts the 8 entities of EN_TRAIN
    per_type = {label: (s["p"], s["r"]) for label, s in scores["ents_per_type"].items()}
    assert per_type == {"PER": (pytest.approx(2 / 3), 1.0), "ORG": (1.0, pytest.approx(2 / 3)), "LOC": (1.0, 1.0)}
    custom = make_nlp(scorer={"@scorers": "test.examples_scorer.v1"}).from_bytes(trained_pipeline.to_bytes())
    assert custom.evaluate(examples(custom))["predicted_ents"] == 8
    assert "ents_f" not in custom.evaluate(examples(custom))


@pytest.mark.slow
def test_default_model_takes_the_encoders_defaults_and_learns():
    """The default model names the BiLSTM encoder without settings (its
    defaults have one source, BiLSTMEncoder.v1), and it learns the tiny data."""
    assert Config().from_str(DEFAULT_CRF_NER_MODEL)["model"]["encoder"] == {
        "@architectures": "spacy-bilstm-crf.BiLSTMEncoder.v1"
    }
    nlp = spacy.blank("xx")
    nlp.add_pipe("crf_ner")
    train(nlp, steps=40)
    assert char_entities(nlp("Alice lives in Paris")) == [(0, 5, "PER"), (15, 20, "LOC")]


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


# --- pre-set entities, whitespace and sentence starts -----------------------------


def test_preset_entities_are_kept_or_overwritten(trained_pipeline):
    ruler_nlp = make_nlp()
    ruler_nlp.from_bytes(trained_pipeline.to_bytes())
    ruler = ruler_nlp.add_pipe("entity_ruler", before="crf_ner")
    ruler.add_patterns([{"label": "ORG", "pattern": "Paris"}, {"label": "PRODUCT", "pattern": "Bob"}])
    doc = ruler_nlp("Bob works at Google in Paris")
    # Preset entities stay, of known and unknown labels; the rest is predicted around them.
    assert char_entities(doc) == [(0, 3, "PRODUCT"), (13, 19, "ORG"), (23, 28, "ORG")]
    ruler_nlp.get_pipe("crf_ner").cfg["overwrite_ents"] = True
    assert char_entities(ruler_nlp("Bob works at Google in Paris")) == [(0, 3, "PER"), (13, 19, "ORG"), (23, 28, "LOC")]


def random_docs_with_a_preset(nlp: Language, n_docs: int, seed: int) -> List[Doc]:
    rng = numpy.random.default_rng(seed)
    docs = []
    for _ in range(n_docs):
        n_words = int(rng.integers(2, 9))
        doc = nlp.make_doc(" ".join(rng.choice(WORDS, n_words)))
        start = int(rng.integers(0, len(doc) - 1))
        end = start + int(rng.integers(1, min(3, len(doc) - start) + 1))
        doc.ents = [Span(doc, start, end, "PER")]
        docs.append(doc)
    return docs


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_preset_entity_is_never_continued(scheme):
    nlp = make_nlp(scheme=scheme)
    ner = nlp.get_pipe("crf_ner")
    exs = [Example.from_dict(nlp.make_doc("Alice Smith ran"), {"entities": [(0, 11, "PER")]})]
    fix_random_seed(0)
    nlp.initialize(lambda: exs)
    # As after training: B-PER is very likely followed by a PER continuation.
    favour_continuing(nlp)
    doc = nlp.make_doc("Alice Smith ran")
    doc.ents = [Span(doc, 0, 1, "PER")]
    ner(doc)
    assert entities(doc)[0] == (0, 1, "PER")
    assert doc[1].ent_iob_ != "I"
    for doc in random_docs_with_a_preset(nlp, 40, seed=13):
        preset = entities(doc)[0]
        ner(doc)
        assert preset in entities(doc), doc.text
        end = preset[1]
        assert end == len(doc) or doc[end].ent_iob_ != "I", doc.text


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_no_entity_on_whitespace(scheme):
    nlp = make_nlp(scheme=scheme)
    train(nlp, steps=15)
    favour_entities(nlp)
    assert nlp("\n").ents == ()
    assert nlp(" \t").ents == ()
    docs = list(nlp.pipe(WHITESPACE_TEXTS))
    assert sum(t.is_space for d in docs for t in d) >= 10  # the texts are rich in whitespace tokens
    ents = [ent for doc in docs for ent in doc.ents]
    assert len(ents) >= 8
    assert not [ent.text for ent in ents if any(t.is_space for t in ent)]


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_no_entity_crosses_a_sentence_start(scheme):
    nlp = make_nlp(scheme=scheme)
    train(nlp, steps=15)
    favour_entities(nlp)
    favour_continuing(nlp)
    ner = nlp.get_pipe("crf_ner")
    doc = nlp.make_doc("Alice Smith Bob Jones lives in New York City")
    for i, token in enumerate(doc):
        token.is_sent_start = i in (0, 2, 5)
    ner(doc)
    assert doc.ents
    for ent in doc.ents:
        assert not any(t.is_sent_start for t in ent[1:]), (ent.start, ent.end)
    # without sentence starts the same scores give an entity over the boundaries
    unsplit = ner(nlp.make_doc(doc.text))
    assert any(ent.start < 2 < ent.end or ent.start < 5 < ent.end for ent in unsplit.ents)


# --- training settings: head learning rate, rehearse, dropout -----------------------


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


@pytest.mark.parametrize("head_lr_scale", [1.0, 5.0])
def test_rehearse_learns_the_teachers_tags(head_lr_scale):
    nlp = make_nlp(head_lr_scale=head_lr_scale)
    train(nlp, steps=8)
    ner = nlp.get_pipe("crf_ner")
    texts = [text for text, _ in EN_TRAIN] + ["Paris and London are big", "Bob Smith lives in Google"]
    raw = [Example(nlp.make_doc(text), nlp.make_doc(text)) for text in texts]
    crf = torch_module(get_crf(ner.model))
    transitions = crf.transitions.detach().clone()
    optimizer = nlp.resume_training()
    losses = [nlp.rehearse(raw, sgd=optimizer)["crf_ner"] for _ in range(6)]
    assert all(numpy.isfinite(losses)) and losses[0] > 0
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    assert losses[-1] < losses[0] * 0.9
    assert not torch.equal(crf.transitions.detach(), transitions)  # the torch layers learn too


def test_rehearse_without_resume_training_is_an_error():
    nlp = make_nlp()
    train(nlp, steps=2)
    raw = [Example(nlp.make_doc("Alice lives in Paris"), nlp.make_doc("Alice lives in Paris"))]
    with pytest.raises(ValueError, match=r"'crf_ner'.*nlp\.resume_training\(\)"):
        nlp.rehearse(raw)


def test_update_with_drop_0_is_deterministic():
    """`drop` reaches the Thinc layers: after an update with drop=0.5 has set
    their rates, drop=0.0 turns dropout off again, whatever the RNG state."""

    def weights_after_updates(seed: int) -> bytes:
        nlp = make_nlp("none")
        exs = examples(nlp)
        fix_random_seed(0)
        optimizer = nlp.initialize(lambda: exs)
        nlp.update(exs, sgd=optimizer, drop=0.5)
        fix_random_seed(seed)
        for _ in range(3):
            nlp.update(exs, sgd=optimizer, drop=0.0)
        return nlp.get_pipe("crf_ner").to_bytes()

    assert weights_after_updates(1) == weights_after_updates(2)


def test_encoder_dropout_comes_from_its_config_not_from_drop():
    """The README's rule: the torch encoders' dropout rate is the one in the
    encoder's config; `drop` sets the rate of the Thinc layers (the tok2vec)."""

    def train_outputs(dropout: float, drop: float):
        nlp = make_nlp({**ENCODERS["bilstm"], "dropout": dropout})
        train(nlp, steps=1)
        nlp.update(examples(nlp), drop=drop)
        ner = nlp.get_pipe("crf_ner")
        rates = {node.attrs["dropout_rate"] for node in ner.model.get_ref("tok2vec").walk() if node.name == "dropout"}
        encoder = ner.model.get_ref("encoder")
        X = [numpy.ones((6, TOK2VEC["width"]), dtype="f")]
        return rates, [encoder.begin_update(X)[0][0] for _ in range(2)]

    rates, (first, second) = train_outputs(dropout=0.0, drop=0.5)
    assert rates == {0.5}
    numpy.testing.assert_array_equal(first, second)  # drop=0.5 did not reach the BiLSTM
    rates, (first, second) = train_outputs(dropout=0.5, drop=0.0)
    assert rates == {0.0}
    assert not numpy.array_equal(first, second)  # drop=0.0 did not turn the BiLSTM's off


# --- settings and errors -----------------------------------------------------------


def test_unknown_factory_setting_is_rejected():
    nlp = spacy.blank("xx")
    with pytest.raises(Exception, match="extra fields not permitted|not permitted|unexpected"):
        nlp.add_pipe("crf_ner", config={"hidden_width": 64})


def test_bad_settings_give_clear_errors():
    with pytest.raises(ValueError, match="Unknown tag scheme 'IOB'"):
        make_nlp(scheme="IOB")
    with pytest.raises(ValueError, match="head_lr_scale must be positive"):
        make_nlp(head_lr_scale=0.0)


def test_wrong_nO_in_config():
    nlp = spacy.blank("xx")
    nlp.add_pipe("crf_ner", config={"model": {**crf_tagger(), "nO": 5}})
    with pytest.raises(ValueError, match="nO is 5.*13 tags"):
        nlp.initialize(lambda: examples(nlp))


def test_listener_width_mismatch_gives_clear_error():
    nlp = spacy.blank("xx")
    nlp.add_pipe("tok2vec", config={"model": cnn_tok2vec(width=32)})
    listener = {"@architectures": "spacy.Tok2VecListener.v1", "width": 16, "upstream": "*"}
    nlp.add_pipe("crf_ner", config={"model": crf_tagger("bilstm", listener)})
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


def test_all_empty_sample_is_a_clear_error():
    nlp = make_nlp()
    exs = [Example.from_dict(nlp.make_doc(""), {"entities": []}) for _ in range(3)]
    with pytest.raises(ValueError, match=r"\[E923\].*'crf_ner'.*Every example's doc is empty"):
        nlp.get_pipe("crf_ner").initialize(lambda: exs, nlp=nlp, labels=["PER"])


def test_nan_loss_raises():
    nlp = make_nlp()
    exs = examples(nlp)
    nlp.initialize(lambda: exs)
    emission = nlp.get_pipe("crf_ner").model.get_ref("emission")
    emission.set_param("W", emission.get_param("W") * numpy.nan)
    with pytest.raises(ValueError, match="NaN"):
        nlp.update(exs)


@pytest.mark.parametrize("value", [numpy.nan, numpy.inf])
def test_non_finite_scores_raise_naming_the_component(value):
    nlp = make_nlp()
    train(nlp, steps=2)
    emission = nlp.get_pipe("crf_ner").model.get_ref("emission")
    weights = emission.get_param("W").copy()
    weights[0, 0] = value
    emission.set_param("W", weights)
    with pytest.raises(ValueError, match=r"'crf_ner'.*NaN or infinite"):
        nlp("Alice lives in Paris")
    with pytest.raises(ValueError, match=r"'crf_ner'.*NaN or infinite"):
        list(nlp.pipe(["", "Bob works at Google"]))


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

"""The component's inference seam and training contract: predict is
emission_scores + decode (+ entity_probs), every caller gets the same
answers from it, entities already on the doc are handled in one place, and
get_loss is pure."""

import numpy
import pytest
from spacy.language import Language
from spacy.tokens import Span
from spacy.training import Example
from thinc.api import SGD, fix_random_seed

from spacy_bilstm_crf.explain import explain
from spacy_bilstm_crf.pipeline.crf_ner import CRFPrediction

from .pipelines import examples, make_nlp
from .tiny_data import EN_TRAIN


def initialized(**settings) -> Language:
    nlp = make_nlp(**settings)
    fix_random_seed(0)
    nlp.initialize(lambda: examples(nlp))
    return nlp


@pytest.fixture(scope="module")
def trained() -> Language:
    nlp = initialized(spans_key="sc", threshold=0.2)
    exs = examples(nlp)
    optimizer = SGD(0.05)
    for _ in range(30):
        nlp.update(exs, sgd=optimizer)
    return nlp


def test_predict_is_emission_scores_then_decode_then_entity_probs(trained):
    pipe = trained.get_pipe("crf_ner")
    docs = [trained.make_doc(text) for text, _ in EN_TRAIN] + [trained.make_doc("")]
    prediction = pipe.predict(docs)
    assert isinstance(prediction, CRFPrediction)
    emissions = pipe.emission_scores(docs)
    decoded = pipe.decode(emissions)
    assert [ids.tolist() for ids in prediction.tag_ids] == [ids.tolist() for ids in decoded]
    entities = [pipe.tag_spans(ids) for ids in decoded]
    assert prediction.scored_spans == pipe.entity_probs(emissions, entities, threshold=pipe.threshold)
    assert prediction.scored_spans[-1] == [] and len(decoded[-1]) == 0
    best = [paths[0].tolist() for paths, _ in pipe.kbest_paths(emissions, 3)]
    assert best == [ids.tolist() for ids in decoded]
    for marginals, doc in zip(pipe.marginals(emissions), docs):
        assert marginals.shape == (len(doc), len(pipe.tags))
        numpy.testing.assert_allclose(marginals.sum(axis=1), 1.0, atol=1e-5)


def test_without_spans_key_predict_scores_nothing():
    nlp = initialized()
    prediction = nlp.get_pipe("crf_ner").predict([nlp.make_doc("Alice lives in Paris"), nlp.make_doc("")])
    assert prediction.scored_spans == [[], []]


def test_an_entity_already_on_the_doc_is_handled_in_one_place(trained):
    """A pre-set entity of a label the CRF does not know: kept by prediction,
    by k-best and by explain, with probability 1 in every one of them."""
    pipe = trained.get_pipe("crf_ner")
    doc = trained.make_doc("Alice lives in Paris")
    doc.ents = [Span(doc, 3, 4, label="CITY")]
    emissions = pipe.emission_scores([doc])
    assert emissions.kept == [[(3, 4, "CITY")]]
    assert (3, 4, "CITY", 1.0) in pipe.entity_probs(emissions, [[]])[0]
    assert all((3, 4, "CITY") in analysis for analysis, _ in pipe.kbest(doc, 3))
    processed = pipe(doc)
    assert (3, 4, "CITY") in [(e.start, e.end, e.label_) for e in processed.ents]
    scores = dict(
        zip([(s.start, s.end, s.label_) for s in processed.spans["sc"]], processed.spans["sc"].attrs["scores"])
    )
    assert scores[(3, 4, "CITY")] == 1.0
    overwrite = initialized(overwrite_ents=True).get_pipe("crf_ner")
    assert overwrite.emission_scores([doc]).kept == [[]]


def test_explain_gives_what_the_component_predicts(trained):
    text = "Bob works at Google in London"
    trace = explain(trained, text, k=2)
    doc = trained(text)
    assert trace.paths.paths[0].entities == [(e.start, e.end, e.label_) for e in doc.ents]
    probs = {(e.start, e.end, e.label): e.probability for e in trace.entities}
    for span, score in zip(doc.spans["sc"], doc.spans["sc"].attrs["scores"]):
        assert probs[(span.start, span.end, span.label_)] == pytest.approx(float(score), abs=1e-5)


def test_constrain_checks_the_batch(trained):
    pipe = trained.get_pipe("crf_ner")
    with pytest.raises(ValueError, match="2 docs but 1 score arrays"):
        pipe.constrain([trained.make_doc("a"), trained.make_doc("b")], [numpy.zeros((1, len(pipe.tags)), "f")])


def test_get_loss_is_pure():
    """Calling get_loss (for a validation loss, say) must not change the next update."""
    plain, checked = initialized(), initialized()
    assert plain.to_bytes() == checked.to_bytes()
    pipe = checked.get_pipe("crf_ner")
    exs = examples(checked)
    scores = pipe.model.predict([eg.predicted for eg in exs])
    first = pipe.get_loss(exs, scores)
    second = pipe.get_loss(exs, scores)
    assert first[0] == second[0] > 0
    losses_checked = checked.update(exs, sgd=SGD(0.1))
    losses_plain = plain.update(examples(plain), sgd=SGD(0.1))
    assert losses_checked == losses_plain
    assert losses_plain["crf_ner"] == pytest.approx(first[0], rel=1e-6)
    assert plain.get_pipe("crf_ner").model.to_bytes() == pipe.model.to_bytes()


def test_get_loss_gradient_is_the_one_update_backpropagates():
    nlp = initialized()
    pipe = nlp.get_pipe("crf_ner")
    exs = examples(nlp)
    scores = pipe.model.predict([eg.predicted for eg in exs])
    loss, d_scores = pipe.get_loss(exs, scores)
    gold, allowed = pipe._gold_and_allowed(exs)
    trained_loss, trained_d_scores = pipe._train_crf(scores, gold, allowed)
    assert loss == pytest.approx(trained_loss, rel=1e-6)
    for pure, layer in zip(d_scores, trained_d_scores):
        numpy.testing.assert_allclose(pure, layer, atol=1e-6)


def test_update_on_docs_without_tokens_changes_nothing():
    nlp = initialized()
    before = nlp.to_bytes()
    empty = [Example.from_dict(nlp.make_doc(""), {"entities": []})] * 2
    assert nlp.get_pipe("crf_ner").update(empty, sgd=SGD(0.1)) == {"crf_ner": 0.0}
    assert nlp.get_pipe("crf_ner").update([], sgd=SGD(0.1)) == {"crf_ner": 0.0}
    assert nlp.to_bytes() == before


def test_calibration_gets_the_pipelines_confidences_through_the_seam(trained):
    from bench.calibration import check_against_pipeline, confidences, emissions_and_entities

    docs = [trained.make_doc(text) for text, _ in EN_TRAIN * 20]  # 100 docs: two pipeline batches
    data = emissions_and_entities(trained, "crf_ner", docs)
    assert len(data.batches) == 2 and len(data.entities) == 100
    scored = confidences(trained, "crf_ner", data, 1.0)
    assert confidences(trained, "crf_ner", data.head(70), 1.0) == scored[:70]
    assert check_against_pipeline(trained, "crf_ner", docs[:70], scored[:70]) < 1e-6


def test_k_is_bounded_for_every_caller(trained):
    """explain() from Python goes through kbest_paths: the bound holds there too."""
    with pytest.raises(ValueError, match="kbest needs 1 <= k <= 1000, got k=10000000"):
        explain(trained, "Alice lives in Paris", k=10_000_000)

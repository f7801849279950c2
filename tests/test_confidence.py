"""Entity confidence, token marginals and k-best paths, of the CRF layer and of crf_ner.

The CRF's answers are checked against brute-force enumeration of every tag
sequence of small random cases (tests/crf_oracle.py), for every tagging scheme.
"""

from pathlib import Path
from typing import List, Sequence, Tuple

import numpy
import pytest
import spacy
import torch
from spacy.language import Language
from spacy.tokens import Doc, Span

from spacy_bilstm_crf.layers.crf import (
    CRF,
    crf_decode,
    crf_kbest,
    crf_marginals,
    crf_span_probs,
    crf_transition_scores,
    set_tag_scheme,
)
from spacy_bilstm_crf.layers.lazy_torch import torch_module
from spacy_bilstm_crf.models.crf_tagger import get_crf
from spacy_bilstm_crf.tag_scheme import allowed_transitions, candidate_spans, make_tags, tags_to_spans

from .crf_oracle import BruteForce
from .pipelines import entities, listener_nlp, make_nlp, train
from .tiny_data import EN_TRAIN

SCHEMES = ("BILUO", "BIO", "BIOES", "BMES")
Spans = List[Tuple[int, int, str]]


# --- the CRF layer on random cases ----------------------------------------------


def random_crf(scheme: str, labels: Sequence[str], seed: int):
    """A CRF layer over ``labels`` in ``scheme`` with random transition, start and end scores."""
    tags = make_tags(labels, scheme)
    crf = CRF(nO=len(tags))
    set_tag_scheme(crf, tags, scheme)
    crf.initialize()
    module = torch_module(crf)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in (module.transitions, module.start_transitions, module.end_transitions):
            param.copy_(torch.randn(param.shape, generator=gen) * 1.5)
    return crf, tags


def random_case(scheme: str, seed: int, lengths=(4, 3, 0, 5)):
    crf, tags = random_crf(scheme, ["A", "B"], seed)
    rng = numpy.random.default_rng(seed)
    emissions = [rng.normal(scale=2.0, size=(n, len(tags))).astype("f") for n in lengths]
    allowed = [numpy.ones((n, len(tags)), dtype=bool) for n in lengths]
    allowed[1][1] = False
    allowed[1][1, 0] = True  # token 1 of doc 1 must be O
    allowed[3][0, [i for i, t in enumerate(tags) if t.endswith("-B")]] = False  # doc 3 opens with no B entity
    return crf, tags, emissions, allowed


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_marginals_and_span_probs_equal_brute_force(scheme, temperature):
    crf, tags, emissions, allowed = random_case(scheme, seed=SCHEMES.index(scheme))
    marginals = crf_marginals(crf, emissions, allowed, temperature=temperature)
    every_span = [
        [(s, e, label) for s in range(len(x)) for e in range(s + 1, len(x) + 1) for label in "AB"] for x in emissions
    ]
    scored = crf_span_probs(crf, emissions, every_span, allowed, temperature=temperature)
    for doc, (x, mask) in enumerate(zip(emissions, allowed)):
        assert marginals[doc].shape == x.shape
        if not len(x):
            assert scored[doc] == []
            continue
        oracle = BruteForce(crf, x, mask)
        numpy.testing.assert_allclose(marginals[doc].sum(axis=1), 1.0, atol=1e-5)
        numpy.testing.assert_allclose(marginals[doc], oracle.marginals(temperature), atol=1e-5)
        brute = oracle.entity_probs(tags, scheme, temperature)
        assert [span[:3] for span in scored[doc]] == every_span[doc]
        for start, end, label, p in scored[doc]:
            assert p == pytest.approx(brute.get((start, end, label), 0.0), abs=1e-5)
        assert max(p for *_, p in scored[doc]) > 0.2  # the cases are not trivial


@pytest.mark.parametrize("scheme", SCHEMES)
def test_spans_above_threshold_are_exactly_those_of_brute_force(scheme):
    crf, tags, emissions, allowed = random_case(scheme, seed=10 + SCHEMES.index(scheme))
    for threshold in (0.05, 0.3, 0.6):
        scored = crf_span_probs(crf, emissions, [[] for _ in emissions], allowed, threshold=threshold)
        for doc, (x, mask) in enumerate(zip(emissions, allowed)):
            if not len(x):
                continue
            brute = BruteForce(crf, x, mask).entity_probs(tags, scheme)
            assert [span[:3] for span in scored[doc]] == sorted(s for s, p in brute.items() if p >= threshold)
            for start, end, label, p in scored[doc]:
                assert p == pytest.approx(brute[(start, end, label)], abs=1e-5)


def test_given_spans_come_first_then_others_above_threshold():
    crf, tags, emissions, allowed = random_case("BILUO", seed=3)
    given = [[(0, 1, "B")], [], [], [(2, 4, "A")]]
    scored = crf_span_probs(crf, emissions, given, allowed, threshold=0.3)
    for doc in range(len(emissions)):
        assert [s[:3] for s in scored[doc][: len(given[doc])]] == given[doc]
        others = scored[doc][len(given[doc]) :]
        assert all(p >= 0.3 for *_, p in others) and others == sorted(others)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_kbest_equals_brute_force(scheme):
    crf, tags, emissions, allowed = random_case(scheme, seed=20 + SCHEMES.index(scheme))
    best = crf_kbest(crf, emissions, 6, allowed, temperature=1.5)
    decoded = crf_decode(crf, emissions, allowed)
    for doc, (x, mask) in enumerate(zip(emissions, allowed)):
        paths, log_probs = best[doc]
        if not len(x):
            assert paths.shape == (1, 0) and log_probs.tolist() == [0.0]
            continue
        top_paths, top_probs = BruteForce(crf, x, mask).ranked(6, temperature=1.5)
        assert paths.tolist() == top_paths.tolist()
        numpy.testing.assert_allclose(numpy.exp(log_probs), top_probs, rtol=1e-4)
        assert paths[0].tolist() == decoded[doc].tolist()


def test_kbest_returns_fewer_paths_when_there_are_fewer():
    crf, tags = random_crf("BIO", ["A"], seed=0)  # O B-A I-A
    x = numpy.zeros((1, 3), dtype="f")
    paths, log_probs = crf_kbest(crf, [x], 5)[0]
    assert sorted(paths[:, 0].tolist()) == [0, 1]  # a one-token doc: O or B-A
    assert numpy.exp(log_probs).sum() == pytest.approx(1.0, abs=1e-5)


def test_candidate_spans_bound_exact_example():
    tags = make_tags(["X"], "BIO")  # O B-X I-X
    marginals = numpy.array(
        [
            [0.1, 0.9, 0.0],  # B-X 0.9
            [0.3, 0.0, 0.7],  # I-X 0.7
            [0.6, 0.0, 0.4],  # I-X 0.4
            [0.5, 0.5, 0.0],
        ]
    )
    # (0,1): begin 0.9, next does not continue 0.3 -> out at 0.5; (0,2): 0.9, 0.7, 1 - 0.4 -> in; (0,3): 0.4 -> out
    assert candidate_spans(marginals, tags, "BIO", 0.5) == [(0, 2, "X"), (3, 4, "X")]
    assert candidate_spans(marginals, tags, "BIO", 0.25) == [(0, 1, "X"), (0, 2, "X"), (0, 3, "X"), (3, 4, "X")]


def test_transition_scores_show_the_scheme_constraints():
    crf, tags = random_crf("BILUO", ["A"], seed=0)
    scores = crf_transition_scores(crf)
    expected = allowed_transitions(tags, "BILUO")
    for got, want in zip((scores["allowed_transitions"], scores["allowed_start"], scores["allowed_end"]), expected):
        assert got.tolist() == want.tolist()


# --- the component -------------------------------------------------------------


@pytest.fixture(scope="module")
def trained() -> Language:
    nlp = make_nlp(spans_key="sc", head_lr_scale=20.0)  # overfits in 30 steps
    train(nlp, steps=30)
    return nlp


def group(doc: Doc, key: str = "sc") -> List[Tuple[int, int, str, float]]:
    spans = doc.spans[key]
    return [(s.start, s.end, s.label_, float(p)) for s, p in zip(spans, spans.attrs["scores"])]


def test_confidence_near_one_after_overfitting_and_ents_unchanged(trained):
    pipe = trained.get_pipe("crf_ner")
    for text, gold in EN_TRAIN:
        doc = trained(text)
        assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == gold
        scored = group(doc)
        assert [s[:3] for s in scored if s[:3] in entities(doc)] == entities(doc)
        assert all(p > 0.95 for s, e, label, p in scored if (s, e, label) in entities(doc))
    pipe.spans_key = None
    try:
        plain = [trained(text) for text, _ in EN_TRAIN]
    finally:
        pipe.spans_key = "sc"
    assert [entities(doc) for doc in plain] == [entities(trained(text)) for text, _ in EN_TRAIN]
    assert all("sc" not in doc.spans for doc in plain)


def test_confidence_falls_when_emissions_are_ambiguous(trained):
    pipe = trained.get_pipe("crf_ner")
    doc = trained.make_doc("Alice lives in Paris")
    emissions = pipe.model.predict([doc])
    crf = get_crf(pipe.model)
    alice = [(0, 1, "PER")]
    sharp = crf_span_probs(crf, emissions, [alice])[0][0][3]
    blurred = emissions[0].copy()
    per = [i for i, tag in enumerate(pipe.tags) if tag.endswith("-PER")]
    blurred[0, per] = blurred[0, 0] = blurred[0, [0] + per].mean()  # as likely O as PER
    ambiguous = crf_span_probs(crf, [blurred], [alice])[0][0][3]
    assert sharp > 0.95 and ambiguous < 0.8
    hotter = crf_span_probs(crf, emissions, [alice], temperature=4.0)[0][0][3]
    assert hotter < sharp


def test_spans_equal_brute_force_on_the_pipeline(trained):
    pipe = trained.get_pipe("crf_ner")
    pipe.threshold = 0.001
    try:
        doc = trained("Bob lives in London")
    finally:
        pipe.threshold = 0.5
    emissions = pipe.model.predict([trained.make_doc(doc.text)])[0]
    brute = BruteForce(get_crf(pipe.model), emissions).entity_probs(pipe.tags, pipe.scheme)
    expected = {span: p for span, p in brute.items() if p >= 0.001 or span in entities(doc)}
    got = group(doc)
    assert [s[:3] for s in got] == sorted(expected)
    for start, end, label, p in got:
        assert p == pytest.approx(expected[(start, end, label)], abs=1e-4)


def test_temperature_changes_probabilities_not_decisions(trained):
    pipe = trained.get_pipe("crf_ner")
    texts = [text for text, _ in EN_TRAIN] + ["Paris hired Bob in Google"]
    before = [(entities(d), group(d)) for d in trained.pipe(texts)]
    pipe.temperature = 3.0
    try:
        after = [(entities(d), group(d)) for d in trained.pipe(texts)]
    finally:
        pipe.temperature = 1.0
    assert [b[0] for b in before] == [a[0] for a in after]
    assert any(a[1] != b[1] for a, b in zip(after, before))


def test_preset_entities_have_probability_one(trained):
    doc = trained.make_doc("Alice works at Google in London")
    doc.ents = [Span(doc, 0, 1, label="ORG"), Span(doc, 3, 4, label="PRODUCT")]  # a wrong label and an unknown one
    doc = trained.get_pipe("crf_ner")(doc)
    scored = {s[:3]: s[3] for s in group(doc)}
    assert scored[(0, 1, "ORG")] == pytest.approx(1.0, abs=1e-5)
    assert scored[(3, 4, "PRODUCT")] == 1.0
    assert (0, 1, "ORG") in entities(doc) and (3, 4, "PRODUCT") in entities(doc)
    others = [span for span in scored if span not in {(0, 1, "ORG"), (3, 4, "PRODUCT")}]
    assert others and all(start > 3 or (start, end) == (1, 3) or end <= 3 and start > 0 for start, end, _ in others)


def test_empty_docs_and_batches(trained):
    docs = list(trained.pipe(["", "Alice lives in Paris", ""]))
    assert [len(d.spans["sc"]) for d in docs] == [0, 2, 0]
    assert [len(d.spans["sc"]) for d in trained.pipe(["", ""])] == [0, 0]
    assert trained.get_pipe("crf_ner").kbest(trained.make_doc(""), 3) == [([], 1.0)]


def test_kbest_on_the_component_equals_brute_force(trained):
    pipe = trained.get_pipe("crf_ner")
    doc = trained.make_doc("Google hired Bob")
    best = pipe.kbest(doc, 4)
    emissions = pipe.model.predict([doc])[0]
    paths, probs = BruteForce(get_crf(pipe.model), emissions).ranked(4)
    expected = [(sorted(tags_to_spans([pipe.tags[i] for i in path], pipe.scheme)), p) for path, p in zip(paths, probs)]
    assert [b[0] for b in best] == [e[0] for e in expected]
    numpy.testing.assert_allclose([b[1] for b in best], [e[1] for e in expected], rtol=1e-4)
    assert best[0][0] == entities(trained("Google hired Bob"))


def test_kbest_keeps_preset_entities(trained):
    pipe = trained.get_pipe("crf_ner")
    doc = trained.make_doc("Alice lives in Paris")
    doc.ents = [Span(doc, 3, 4, label="PRODUCT")]
    for spans, _ in pipe.kbest(doc, 3):
        assert (3, 4, "PRODUCT") in spans


def test_settings_serialize(trained, tmp_path):
    pipe = trained.get_pipe("crf_ner")
    pipe.threshold, pipe.temperature = 0.2, 1.7
    try:
        data = trained.to_bytes()
        trained.to_disk(tmp_path / "nlp")
    finally:
        pipe.threshold, pipe.temperature = 0.5, 1.0
    fresh = make_nlp()
    fresh.from_bytes(data)
    loaded = spacy.load(tmp_path / "nlp")
    for nlp in (fresh, loaded):
        other = nlp.get_pipe("crf_ner")
        assert (other.spans_key, other.threshold, other.temperature) == ("sc", 0.2, pytest.approx(1.7))
        assert other.to_bytes() == spacy.load(tmp_path / "nlp").get_pipe("crf_ner").to_bytes()
    assert loaded.config["components"]["crf_ner"]["spans_key"] == "sc"


def test_defaults_cost_nothing_and_bad_settings_fail():
    nlp = make_nlp()
    pipe = nlp.get_pipe("crf_ner")
    assert (pipe.spans_key, pipe.threshold, pipe.temperature) == (None, 0.5, 1.0)
    train(nlp, steps=1)
    doc = nlp("Alice lives in Paris")
    assert not doc.spans and pipe.predict([doc]).scored_spans == [[]]
    for bad in ({"threshold": 0.0}, {"threshold": 1.5}, {"temperature": 0.0}, {"spans_key": ""}):
        with pytest.raises(ValueError):
            make_nlp(**bad)
    with pytest.raises(ValueError, match="temperature"):
        pipe.temperature = -1.0


def test_legacy_pipeline_loads_with_defaults_and_gives_confidence():
    nlp = spacy.load(Path(__file__).parent / "data" / "legacy-0.1.0" / "bilstm-bio")
    pipe = nlp.get_pipe("crf_ner")
    assert (pipe.spans_key, pipe.threshold, pipe.temperature) == (None, 0.5, 1.0)
    pipe.spans_key = "conf"
    doc = nlp("Alice lives in Paris")
    assert [s[:3] for s in group(doc, "conf") if s[:3] in entities(doc)] == entities(doc)
    assert all(0.0 <= p <= 1.0 for *_, p in group(doc, "conf"))


# --- transformer path -----------------------------------------------------------


@pytest.mark.slow
def test_confidence_with_a_transformer_listener(tiny_bert):
    nlp = listener_nlp(tiny_bert, window=4, stride=3, spans_key="sc", head_lr_scale=20.0)
    train(nlp, steps=3)
    pipe = nlp.get_pipe("crf_ner")
    doc = nlp("Bob works at Google in London")
    emissions = pipe.model.predict([doc])
    expected = crf_span_probs(get_crf(pipe.model), emissions, [entities(doc)], threshold=0.5)[0]
    assert group(doc) == [(s, e, label, pytest.approx(p, abs=1e-6)) for s, e, label, p in sorted(expected)]
    best = pipe.kbest(doc, 3)
    assert best[0][0] == entities(doc) and best[0][1] >= best[-1][1]

"""Entity confidence, token marginals, k-best paths and the explain trace.

The CRF's answers are checked against brute-force enumeration of every tag
sequence of small random cases, for every tagging scheme.
"""

import itertools
import json
import shutil
import subprocess
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy
import pytest
import spacy
import torch
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from thinc.api import fix_random_seed

from spacy_bilstm_crf.cli import main
from spacy_bilstm_crf.explain import explain, render_html, render_text
from spacy_bilstm_crf.explain.terminal import display_width
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
from spacy_bilstm_crf.modules.idcnn import IDCNN, receptive_field
from spacy_bilstm_crf.tag_scheme import allowed_transitions, candidate_spans, make_tags, tags_to_spans

from .pipelines import cnn_tok2vec
from .tiny_data import EN_TRAIN, ZH_TRAIN

SCHEMES = ("BILUO", "BIO", "BIOES", "BMES")
Spans = List[Tuple[int, int, str]]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models train 30 times faster on one thread than on two busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- brute force -------------------------------------------------------------


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


def enumerate_paths(
    crf, emissions: numpy.ndarray, allowed: Optional[numpy.ndarray], temperature: float = 1.0
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Every valid tag sequence of one doc and its probability, by enumeration."""
    scores = crf_transition_scores(crf)
    n_tokens, n_tags = emissions.shape
    paths = numpy.array(list(itertools.product(range(n_tags), repeat=n_tokens)), dtype=int)  # (P, T)
    valid = scores["allowed_start"][paths[:, 0]] & scores["allowed_end"][paths[:, -1]]
    valid &= scores["allowed_transitions"][paths[:, :-1], paths[:, 1:]].all(axis=1)
    if allowed is not None:
        valid &= allowed[numpy.arange(n_tokens), paths].all(axis=1)
    paths = paths[valid]
    total = scores["start"][paths[:, 0]] + scores["end"][paths[:, -1]]
    total = total + emissions[numpy.arange(n_tokens), paths].sum(axis=1)
    total = total + scores["transitions"][paths[:, :-1], paths[:, 1:]].sum(axis=1)
    weights = numpy.exp((total - total.max()) / temperature)
    return paths, weights / weights.sum()


def brute_span_probs(paths: numpy.ndarray, probs: numpy.ndarray, tags: List[str], scheme: str) -> Dict:
    out: Dict[Tuple[int, int, str], float] = {}
    for path, p in zip(paths, probs):
        for span in tags_to_spans([tags[i] for i in path], scheme):
            out[span] = out.get(span, 0.0) + p
    return out


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
        paths, probs = enumerate_paths(crf, x, mask, temperature)
        numpy.testing.assert_allclose(marginals[doc].sum(axis=1), 1.0, atol=1e-5)
        expected = numpy.zeros(x.shape)
        for path, p in zip(paths, probs):
            expected[numpy.arange(len(x)), path] += p
        numpy.testing.assert_allclose(marginals[doc], expected, atol=1e-5)
        brute = brute_span_probs(paths, probs, tags, scheme)
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
            brute = brute_span_probs(*enumerate_paths(crf, x, mask), tags, scheme)
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
        all_paths, probs = enumerate_paths(crf, x, mask, temperature=1.5)
        order = numpy.argsort(-probs, kind="stable")[:6]
        assert paths.tolist() == all_paths[order].tolist()
        numpy.testing.assert_allclose(numpy.exp(log_probs), probs[order], rtol=1e-4)
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

CNN = cnn_tok2vec()
ENCODERS = {
    "bilstm": {"@architectures": "spacy-bilstm-crf.BiLSTMEncoder.v1", "hidden_width": 16, "dropout": 0.0},
    "idcnn": {"@architectures": "spacy-bilstm-crf.IDCNNEncoder.v2", "width": 16, "dropout": 0.0},
    "none": {"@architectures": "spacy-bilstm-crf.NoEncoder.v1"},
}


def make_nlp(lang: str = "en", encoder: str = "bilstm", tok2vec: Optional[Dict] = None, **settings) -> Language:
    nlp = spacy.blank(lang)
    model = {"@architectures": "spacy-bilstm-crf.CRFTagger.v1", "tok2vec": tok2vec or CNN, "encoder": ENCODERS[encoder]}
    nlp.add_pipe("crf_ner", config={"model": model, **settings})
    return nlp


def examples(nlp: Language, lang: str = "en") -> List[Example]:
    if lang == "zh":
        out = []
        for text, ents in ZH_TRAIN:
            doc = Doc(nlp.vocab, words=list(text), spaces=[False] * len(text))
            out.append(Example.from_dict(doc, {"entities": [(s, e, label) for s, e, label in ents]}))
        return out
    return [Example.from_dict(nlp.make_doc(text), {"entities": ents}) for text, ents in EN_TRAIN]


def train(nlp: Language, steps: int, lang: str = "en") -> Language:
    exs = examples(nlp, lang)
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: exs)
    for _ in range(steps):
        nlp.update(exs, sgd=optimizer)
    return nlp


@pytest.fixture(scope="module")
def trained() -> Language:
    return train(make_nlp(spans_key="sc", head_lr_scale=5.0), steps=30)


def ents(doc: Doc) -> Spans:
    return [(e.start, e.end, e.label_) for e in doc.ents]


def group(doc: Doc, key: str = "sc") -> List[Tuple[int, int, str, float]]:
    spans = doc.spans[key]
    return [(s.start, s.end, s.label_, float(p)) for s, p in zip(spans, spans.attrs["scores"])]


def test_confidence_near_one_after_overfitting_and_ents_unchanged(trained):
    pipe = trained.get_pipe("crf_ner")
    for text, gold in EN_TRAIN:
        doc = trained(text)
        assert [(e.start_char, e.end_char, e.label_) for e in doc.ents] == gold
        scored = group(doc)
        assert [s[:3] for s in scored if s[:3] in ents(doc)] == ents(doc)
        assert all(p > 0.95 for s, e, label, p in scored if (s, e, label) in ents(doc))
    pipe.spans_key = None
    try:
        plain = [trained(text) for text, _ in EN_TRAIN]
    finally:
        pipe.spans_key = "sc"
    assert [ents(doc) for doc in plain] == [ents(trained(text)) for text, _ in EN_TRAIN]
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
    brute = brute_span_probs(*enumerate_paths(get_crf(pipe.model), emissions, None), pipe.tags, pipe.scheme)
    expected = {span: p for span, p in brute.items() if p >= 0.001 or span in ents(doc)}
    got = group(doc)
    assert [s[:3] for s in got] == sorted(expected)
    for start, end, label, p in got:
        assert p == pytest.approx(expected[(start, end, label)], abs=1e-4)


def test_temperature_changes_probabilities_not_decisions(trained):
    pipe = trained.get_pipe("crf_ner")
    texts = [text for text, _ in EN_TRAIN] + ["Paris hired Bob in Google"]
    before = [(ents(d), group(d)) for d in trained.pipe(texts)]
    pipe.temperature = 3.0
    try:
        after = [(ents(d), group(d)) for d in trained.pipe(texts)]
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
    assert (0, 1, "ORG") in ents(doc) and (3, 4, "PRODUCT") in ents(doc)
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
    paths, probs = enumerate_paths(get_crf(pipe.model), emissions, None)
    order = numpy.argsort(-probs)[:4]
    expected = [(sorted(tags_to_spans([pipe.tags[i] for i in paths[n]], pipe.scheme)), probs[n]) for n in order]
    assert [b[0] for b in best] == [e[0] for e in expected]
    numpy.testing.assert_allclose([b[1] for b in best], [e[1] for e in expected], rtol=1e-4)
    assert best[0][0] == ents(trained("Google hired Bob"))


def test_kbest_keeps_preset_entities(trained):
    pipe = trained.get_pipe("crf_ner")
    doc = trained.make_doc("Alice lives in Paris")
    doc.ents = [Span(doc, 3, 4, label="PRODUCT")]
    for entities, _ in pipe.kbest(doc, 3):
        assert (3, 4, "PRODUCT") in entities


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
    assert [s[:3] for s in group(doc, "conf") if s[:3] in ents(doc)] == ents(doc)
    assert all(0.0 <= p <= 1.0 for *_, p in group(doc, "conf"))


# --- transformer path -----------------------------------------------------------


def bert_nlp(bert: Path, inline: bool, encoder: str) -> Language:
    trf = {
        "@architectures": "spacy-transformers.TransformerModel.v3",
        "name": str(bert),
        "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 4, "stride": 3},
        "tokenizer_config": {"use_fast": True},
    }
    pooling = {"@layers": "reduce_mean.v1"}
    nlp = spacy.blank("en")
    if inline:
        settings = {key: value for key, value in trf.items() if key != "@architectures"}
        tok2vec = {"@architectures": "spacy-transformers.Tok2VecTransformer.v3", "pooling": pooling, **settings}
    else:
        nlp.add_pipe("transformer", config={"model": trf})
        tok2vec = {
            "@architectures": "spacy-transformers.TransformerListener.v1",
            "grad_factor": 1.0,
            "pooling": pooling,
            "upstream": "*",
        }
    model = {"@architectures": "spacy-bilstm-crf.CRFTagger.v1", "tok2vec": tok2vec, "encoder": ENCODERS[encoder]}
    nlp.add_pipe("crf_ner", config={"model": model, "spans_key": "sc", "head_lr_scale": 20.0})
    return nlp


def test_confidence_with_a_transformer_listener(tiny_bert):
    nlp = train(bert_nlp(tiny_bert, inline=False, encoder="bilstm"), steps=3)
    pipe = nlp.get_pipe("crf_ner")
    doc = nlp("Bob works at Google in London")
    emissions = pipe.model.predict([doc])
    expected = crf_span_probs(get_crf(pipe.model), emissions, [ents(doc)], threshold=0.5)[0]
    assert group(doc) == [(s, e, label, pytest.approx(p, abs=1e-6)) for s, e, label, p in sorted(expected)]
    best = pipe.kbest(doc, 3)
    assert best[0][0] == ents(doc) and best[0][1] >= best[-1][1]


# --- explain ---------------------------------------------------------------------

ZH_TEXT = "张三和李四昨天在北京的微软公司开会讨论"  # 19 characters
EN_TEXT = "Alice and Bob met Google engineers in London and Paris to discuss new products today"


def check_trace(nlp: Language, text: str, k: int = 3):
    trace = explain(nlp, text, k=k)
    pipe = nlp.get_pipe("crf_ner")
    doc = nlp.make_doc(text)
    for name, _ in nlp.pipeline[:-1]:
        doc = nlp.get_pipe(name)(doc)
    emissions = pipe.model.predict([doc])[0]
    numpy.testing.assert_allclose(trace.emissions.scores, emissions, atol=1e-3)
    n_tokens, n_tags = len(doc), len(pipe.tags)
    assert [t.text for t in trace.tokens] == [t.text for t in doc]
    assert trace.vectors.shape[0] == n_tokens and trace.encoder.shape[0] == n_tokens
    assert numpy.asarray(trace.emissions.scores).shape == (n_tokens, n_tags)
    assert all(len(top) == 3 for top in trace.emissions.top)
    best = [pipe.tags[i] for i in crf_decode(get_crf(pipe.model), [emissions])[0].tolist()]
    assert trace.paths.paths[0].tags == best
    probs = [p.probability for p in trace.paths.paths]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6 and len(probs) == k
    assert all(p.differs_at for p in trace.paths.paths[1:])
    final = nlp(text)
    assert [(e.start, e.end, e.label) for e in trace.entities if e.predicted] == ents(final)
    numpy.testing.assert_allclose(numpy.asarray(trace.marginals).sum(axis=1), 1.0, atol=1e-3)
    text_out = render_text(trace)
    for n in range(1, 9):
        assert f"\n{n}. " in text_out
    assert max(display_width(line) for line in text_out.splitlines()) <= 100
    json.dumps(trace.to_dict())
    return trace


@pytest.mark.parametrize("encoder", sorted(ENCODERS))
def test_explain_cpu_tok2vec_each_encoder(encoder):
    nlp = train(make_nlp("zh", encoder=encoder), steps=2, lang="zh")
    trace = check_trace(nlp, ZH_TEXT)
    assert trace.transformer is None
    assert trace.vectors.shape == [len(ZH_TEXT), 32]
    assert trace.vectors.context.startswith("5 tokens")  # window 1, depth 2
    # the IDCNN's defaults: kernel 3, dilations [1, 2], 2 iterations
    assert trace.encoder.receptive_field == (15 if encoder == "idcnn" else None)
    assert trace.encoder.shape[1] == {"bilstm": 32, "idcnn": 16, "none": 32}[encoder]
    assert trace.transitions.forbidden[0] == ("<start>", "I-LOC") and ("O", "L-PER") in trace.transitions.forbidden


@pytest.mark.parametrize("inline,encoder", [(False, "idcnn"), (True, "none")])
def test_explain_transformer(tiny_bert, inline, encoder):
    nlp = train(bert_nlp(tiny_bert, inline=inline, encoder=encoder), steps=1)
    trace = check_trace(nlp, EN_TEXT)
    trf = trace.transformer
    assert trf is not None and trf.kind == ("inline" if inline else "listener")
    n_tokens = len(trace.tokens)
    assert len(trf.windows) > 4 and all(w.end - w.start <= 4 for w in trf.windows)  # window 4, stride 3
    assert sorted({i for w in trf.windows for i in range(w.start, w.end)}) == list(range(n_tokens))
    assert trf.output_shape[0] == len(trf.windows) and trf.output_shape[2] == 32
    assert len(trf.alignment) == n_tokens
    for token, pairs in zip(trace.tokens, trf.alignment):
        windows = sorted({w for w, _ in pairs})
        assert windows == [n for n, w in enumerate(trf.windows) if w.start <= token.i < w.end]
        for window in windows:
            pieces = [trf.windows[window].wordpieces[p] for w, p in pairs if w == window]
            assert "".join(piece.replace("##", "") for piece in pieces) == token.text.lower()


def test_idcnn_receptive_field_is_what_the_module_sees():
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


def test_explain_command_writes_json_and_html(tmp_path, capsys):
    nlp = train(make_nlp("zh", encoder="idcnn", spans_key="sc"), steps=30, lang="zh")
    nlp.to_disk(tmp_path / "model")
    code = main(
        [
            "explain",
            str(tmp_path / "model"),
            ZH_TEXT,
            "--k",
            "2",
            "--json",
            str(tmp_path / "t.json"),
            "--html",
            str(tmp_path / "t.html"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "7. Viterbi path and the next 1 best" in out
    data = json.loads((tmp_path / "t.json").read_text(encoding="utf8"))
    assert data["text"] == ZH_TEXT and len(data["paths"]["paths"]) == 2
    assert data["paths"]["paths"][0]["tags"] == explain(nlp, ZH_TEXT).paths.paths[0].tags
    html = (tmp_path / "t.html").read_text(encoding="utf8")
    assert html.count("<svg") == 2 and 'class="entities"' in html
    predicted = [e for e in data["entities"] if e["predicted"]]
    assert predicted, "the trained pipeline finds entities in the sentence"
    for e in predicted:
        assert f"{e['label']} {e['probability']:.2f}" in html


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_explain_html_renders_in_headless_chromium(tmp_path):
    nlp = train(make_nlp("zh", spans_key="sc"), steps=30, lang="zh")
    trace = explain(nlp, ZH_TEXT)
    page = tmp_path / "trace.html"
    page.write_text(render_html(trace), encoding="utf8")
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'class="emissions"' in dom and 'class="transitions"' in dom
    assert dom.count("<mark") == len([e for e in trace.entities if e.predicted]) > 0
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1200,900",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 10_000


def test_calibration_metrics_exact():
    from bench.calibration import kept_scores, reliability

    conf = numpy.array([0.95, 0.95, 0.55, 0.55, 0.15])
    correct = numpy.array([True, False, True, True, False])
    rows, ece = reliability(conf, correct)
    filled = [(r["low"], r["count"], r["confidence"], r["precision"]) for r in rows if r["count"]]
    assert filled == [(0.1, 1, 0.15, 0.0), (0.5, 2, 0.55, 1.0), (0.9, 2, 0.95, 0.5)]
    assert ece == pytest.approx((1 * 0.15 + 2 * 0.45 + 2 * 0.45) / 5)
    by_t = {row["t"]: (row["kept"], row["p"], row["r"]) for row in kept_scores(conf, correct, n_gold=4)}
    assert by_t[0.0] == (5, 0.6, 0.75) and by_t[0.5] == (4, 0.75, 0.75) and by_t[0.9] == (2, 0.5, 0.25)

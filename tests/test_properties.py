"""Property tests: arbitrary text, pre-set entities and partial gold
annotation through every encoder and scheme, on an initialized and on a
briefly trained pipeline; and very long documents.

Examples are bounded and derandomized, so that a run is short and repeatable."""

import os
import resource
import time
from typing import Callable, Dict, List, Sequence, Tuple

import numpy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example

from .pipelines import entities, listener_nlp, make_nlp, train
from .tiny_data import EN_TRAIN, ZH_TRAIN

KEYS = [
    (encoder, scheme, state)
    for encoder in ("bilstm", "idcnn", "none")
    for scheme in ("BIO", "BILUO")
    for state in ("init", "trained")
]
# The edit-test loop (``-m "not slow"``) runs two of the twelve pipelines: both
# schemes, two encoders, initialized and trained; the full suite runs them all.
FAST_KEYS = {("bilstm", "BILUO", "trained"), ("idcnn", "BIO", "init")}
PIPELINES = [pytest.param(key, id="-".join(key), marks=() if key in FAST_KEYS else pytest.mark.slow) for key in KEYS]
LABELS = ("LOC", "ORG", "PER")
PROPERTY_SETTINGS = settings(
    max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow], database=None
)

# --- text ------------------------------------------------------------------------

PIECES = [
    "👩\u200d👩\u200d👧",  # ZWJ sequence
    "👍🏽",
    "🏳️\u200d🌈",
    "🇫🇷",
    "e\u0301",  # combining marks
    "\u0301",
    "a\u0308\u0323",
    "مرحبا بالعالم",  # right-to-left
    "שָׁלוֹם",
    "\u202eabc\u202c",
    "\u200b",  # zero-width
    "\u200c",
    "\u200d",
    "\ufeff",
    "\u2060",
    "\x00",  # control characters
    "\x07",
    "\x1b[0m",
    "\x7f",
    "\x85",
    "\r\n",
    "\t",
    "\x0b\x0c",
    "\u2028",
    "\u3000",
    "\xa0",
    "  ",
    "\n\n",
    "张三住在北京",  # CJK, mixed with Latin
    "東京Tower",
    "Alice",
    "Paris",
    "New York",
    "Google",
    "Bob works at",
    ".",
    "'s",
    "x" * 300,  # very long tokens
    "ab" * 1500,
]
SEPARATORS = [" ", " ", "", "\n", "  ", "\t"]
texts = st.one_of(
    st.just(""),
    st.text(alphabet=" \t\n\r\x0b\x0c\xa0\u2028\u3000", max_size=8),  # whitespace only
    st.lists(
        st.tuples(st.one_of(st.sampled_from(PIECES), st.text(max_size=8)), st.sampled_from(SEPARATORS)),
        max_size=12,
    ).map(lambda parts: "".join(piece + sep for piece, sep in parts)),
)
WORDS = "Alice Bob Paris London Google New York lives in at the 😀 北京".split() + ["\n", " "]


# --- pipelines ---------------------------------------------------------------------


def build(encoder: str, scheme: str, trained: bool, lang: str = "xx") -> Language:
    """crf_ner initialized on the tiny data, and trained for 10 steps if ``trained``."""
    nlp = make_nlp(encoder, lang=lang, scheme=scheme)
    train(nlp, steps=10 if trained else 0)
    return nlp


@pytest.fixture(scope="module")
def pipelines() -> Callable[[Tuple[str, str, str]], Language]:
    """The pipeline of a key, built when a test first asks for it."""
    built: Dict[Tuple[str, str, str], Language] = {}

    def get(key: Tuple[str, str, str]) -> Language:
        if key not in built:
            built[key] = build(key[0], key[1], key[2] == "trained")
        return built[key]

    return get


def check_well_formed(doc: Doc, predicted: Sequence[Span]) -> None:
    """Every token tagged, entities inside the doc, ordered and apart; no
    predicted entity on a whitespace token."""
    assert all(token.ent_iob_ in ("B", "I", "O") for token in doc), [t.ent_iob_ for t in doc]
    spans = entities(doc)
    assert all(0 <= start < end <= len(doc) for start, end, _ in spans)
    assert all(end <= start for (_, end, _), (start, _, _) in zip(spans, spans[1:]))
    for ent in predicted:
        assert ent.label_ in LABELS
        assert not any(token.is_space for token in ent), (ent.start, ent.end, repr(ent.text))


# --- arbitrary text -------------------------------------------------------------------


@pytest.mark.parametrize("key", PIPELINES)
@PROPERTY_SETTINGS
@given(batch=st.lists(texts, min_size=1, max_size=5))
def test_any_text(pipelines, key, batch):
    nlp = pipelines(key)
    one = list(nlp.pipe(batch, batch_size=1))
    for doc in one:
        check_well_formed(doc, doc.ents)
    many = list(nlp.pipe(batch, batch_size=64))
    assert [entities(doc) for doc in many] == [entities(doc) for doc in one]
    assert [[t.ent_iob_ for t in doc] for doc in many] == [[t.ent_iob_ for t in doc] for doc in one]


# --- pre-set entities -------------------------------------------------------------------


@st.composite
def docs_with_presets(draw) -> Tuple[List[str], List[Tuple[int, int, str]]]:
    words = draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=14))
    cuts = sorted(draw(st.sets(st.integers(0, len(words)), max_size=6)))
    presets = []
    for start, end in zip(cuts[::2], cuts[1::2]):
        if end > start:
            presets.append((start, end, draw(st.sampled_from(LABELS + ("PRODUCT",)))))
    return words, presets


@pytest.mark.parametrize("key", PIPELINES)
@PROPERTY_SETTINGS
@given(batch=st.lists(docs_with_presets(), min_size=1, max_size=4))
def test_preset_entities(pipelines, key, batch):
    nlp = pipelines(key)
    ner = nlp.get_pipe("crf_ner")

    def make(with_presets: bool) -> List[Doc]:
        docs = []
        for words, presets in batch:
            doc = Doc(nlp.vocab, words=words)
            if with_presets:
                doc.ents = [Span(doc, start, end, label) for start, end, label in presets]
            docs.append(doc)
        return docs

    plain = [entities(doc) for doc in nlp.pipe(make(False))]
    for doc, (_, presets) in zip(nlp.pipe(make(True)), batch):
        kept = [ent for ent in entities(doc) if ent in presets]
        assert kept == presets
        check_well_formed(doc, [ent for ent in doc.ents if (ent.start, ent.end, ent.label_) not in presets])
    ner.cfg["overwrite_ents"] = True
    try:
        assert [entities(doc) for doc in nlp.pipe(make(True))] == plain
    finally:
        ner.cfg["overwrite_ents"] = False


# --- partial gold through update ----------------------------------------------------------


def biluo(n_tokens: int, spans: List[Tuple[int, int, str]]) -> List[str]:
    tags = ["O"] * n_tokens
    for start, end, label in spans:
        if end - start == 1:
            tags[start] = f"U-{label}"
        else:
            tags[start:end] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 2) + [f"L-{label}"]
    return tags


@st.composite
def partial_gold(draw) -> Tuple[List[str], List[str]]:
    """Words and BILUO tags, some of them "-" (missing): outside tokens one by
    one, entities as a whole (spaCy takes no "-" inside an entity)."""
    words, spans = draw(docs_with_presets())
    spans = [(start, end, label if label in LABELS else "PER") for start, end, label in spans]
    tags = biluo(len(words), spans)
    for i in draw(st.sets(st.integers(0, len(words) - 1))):
        if tags[i] == "O":
            tags[i] = "-"
    for start, end, _ in spans:
        if draw(st.booleans()):
            tags[start:end] = ["-"] * (end - start)
    return words, tags


def gradients(nlp: Language) -> List[numpy.ndarray]:
    """Every gradient of the component's model (Thinc and torch), which are then zeroed."""
    grads = []
    for node in nlp.get_pipe("crf_ner").model.walk():
        for name in node.param_names:
            if node.has_grad(name):
                grads.append(node.get_grad(name).copy())
                node.get_grad(name).fill(0)
        for shim in node.shims:
            for param in shim._model.parameters():
                if param.grad is not None:
                    grads.append(param.grad.numpy().copy())
                    param.grad.zero_()
    return grads


@pytest.mark.parametrize("key", PIPELINES)
@PROPERTY_SETTINGS
@given(batch=st.lists(partial_gold(), min_size=1, max_size=4))
def test_partial_gold_gives_finite_loss_and_gradients(pipelines, key, batch):
    nlp = pipelines(key)
    exs = [Example.from_dict(Doc(nlp.vocab, words=words), {"entities": tags}) for words, tags in batch]
    losses: Dict[str, float] = {}
    nlp.update(exs, sgd=False, losses=losses)  # no optimizer: the shared pipeline keeps its weights
    grads = gradients(nlp)
    # finite, and far below the cost of a gold path that the decoding rules would forbid (1e4 or infinite)
    assert -1e-3 < losses["crf_ner"] < 1e3
    assert grads and all(numpy.isfinite(grad).all() for grad in grads)
    # A known tag leaves a choice (and so a gradient) except on whitespace, which is always O.
    if any(tag != "-" and not word.isspace() for words, tags in batch for word, tag in zip(words, tags)):
        assert any(numpy.abs(grad).max() > 0 for grad in grads)


# --- very long documents ----------------------------------------------------------------------


def rss_mb() -> Tuple[float, float]:
    """Current and peak resident memory of this process, in MB."""
    with open(f"/proc/{os.getpid()}/status", encoding="ascii") as status:
        current = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return current / 1024, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(capsys, what: str, before: Tuple[float, float], after: Tuple[float, float], seconds: float) -> None:
    with capsys.disabled():
        print(
            f"\n{what}: RSS {before[0]:.0f} -> {after[0]:.0f} MB (+{after[0] - before[0]:.0f}), "
            f"peak {before[1]:.0f} -> {after[1]:.0f} MB (+{after[1] - before[1]:.0f}), {seconds:.1f} s"
        )


@pytest.mark.slow
def test_100k_character_chinese_document(capsys):
    nlp = build("bilstm", "BILUO", trained=True, lang="zh")
    rng = numpy.random.default_rng(0)
    chars = list("".join(text for text, _ in ZH_TRAIN) + "，。、")
    text = "".join(rng.choice(chars, 100_000))
    before, start = rss_mb(), time.perf_counter()
    doc = nlp(text)
    report(capsys, "100,000-character Chinese doc, CPU BiLSTM-CRF", before, rss_mb(), time.perf_counter() - start)
    assert len(doc) == 100_000
    assert all(token.ent_iob_ in ("B", "I", "O") for token in doc)
    assert doc.ents


@pytest.mark.slow
def test_5000_token_english_document_through_a_transformer(tiny_bert, capsys):
    nlp = listener_nlp(tiny_bert)
    train(nlp, steps=0)
    words = [word for text, _ in EN_TRAIN for word in text.split()]
    text = " ".join(numpy.random.default_rng(0).choice(words, 5000))
    before, start = rss_mb(), time.perf_counter()
    doc = nlp(text)
    report(capsys, "5,000-token English doc, tiny BERT + BiLSTM-CRF", before, rss_mb(), time.perf_counter() - start)
    assert len(doc) == 5000
    assert all(token.ent_iob_ in ("B", "I", "O") for token in doc)

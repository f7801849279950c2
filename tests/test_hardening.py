"""Issue 13: the seven defects found by a demanding user, each reproduced as
the issue describes it, and damaged pipeline folders."""

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy
import pytest
import spacy
import torch
from spacy.language import Language
from spacy.tokens import Doc, Span
from spacy.training import Example
from thinc.api import Config, fix_random_seed

from spacy_bilstm_crf.layers.lazy_torch import torch_module
from spacy_bilstm_crf.models.crf_tagger import get_crf
from spacy_bilstm_crf.testing import build_tiny_bert

from .pipelines import cnn_tok2vec, listener_nlp
from .tiny_data import EN_TRAIN

TOK2VEC = cnn_tok2vec(width=16, depth=1, embed_size=300)
BILSTM = {"@architectures": "spacy-bilstm-crf.BiLSTMEncoder.v1", "hidden_width": 8, "dropout": 0.0}
IDCNN = {"@architectures": "spacy-bilstm-crf.IDCNNEncoder.v2", "width": 16, "dropout": 0.0}
NO_ENCODER = {"@architectures": "spacy-bilstm-crf.NoEncoder.v1"}
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


def tiny_nlp(encoder: Dict = BILSTM, tok2vec: Dict = TOK2VEC, **settings) -> Language:
    nlp = spacy.blank("en")
    model = {"@architectures": "spacy-bilstm-crf.CRFTagger.v1", "tok2vec": tok2vec, "encoder": encoder}
    nlp.add_pipe("crf_ner", config={"model": model, **settings})
    return nlp


def examples(nlp: Language, data=EN_TRAIN) -> List[Example]:
    return [Example.from_dict(nlp.make_doc(text), {"entities": ents}) for text, ents in data]


def train(nlp: Language, steps: int, seed: int = 0) -> List[float]:
    exs = examples(nlp)
    fix_random_seed(seed)
    optimizer = nlp.initialize(lambda: exs)
    return [nlp.update(exs, sgd=optimizer)["crf_ner"] for _ in range(steps)]


def entities(doc: Doc) -> List[Tuple[int, int, str]]:
    return [(ent.start, ent.end, ent.label_) for ent in doc.ents]


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


@pytest.fixture(scope="module")
def trained() -> Language:
    nlp = tiny_nlp()
    train(nlp, steps=30)
    return nlp


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("saved") / "pipeline"
    trained.to_disk(path)
    return path


# --- 1. pre-set entities -----------------------------------------------------


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
def test_1_preset_entity_is_never_continued(scheme):
    nlp = spacy.blank("en")
    ner = nlp.add_pipe("crf_ner", config={"scheme": scheme})
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


# --- 2. multiprocessing and pickling --------------------------------------------

PIPE_SCRIPT = """
import json, multiprocessing, sys

import spacy
import torch
from spacy.language import Language


@Language.component("record_threads")
def record_threads(doc):
    doc.user_data["torch_threads"] = torch.get_num_threads()
    return doc


if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1])
    nlp = spacy.load(sys.argv[2])
    nlp.add_pipe("record_threads")
    texts = json.loads(sys.argv[3])
    one = list(nlp.pipe(texts))
    two = list(nlp.pipe(texts, n_process=2, batch_size=2))
    print(json.dumps({
        "one": [[[e.start, e.end, e.label_] for e in d.ents] for d in one],
        "two": [[[e.start, e.end, e.label_] for e in d.ents] for d in two],
        "threads": sorted({d.user_data["torch_threads"] for d in two}),
    }))
"""

PIPE_TEXTS = [text for text, _ in EN_TRAIN] * 2 + ["", "Paris", "\n", "Alice and Bob went to New York and Paris"]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_2_pipe_with_two_processes_equals_one_process(saved, trained, method, tmp_path):
    """A hang fails at the timeout instead of blocking the suite."""
    script = tmp_path / "pipe_two.py"
    script.write_text(PIPE_SCRIPT, encoding="utf8")
    done = subprocess.run(
        [sys.executable, str(script), method, str(saved), json.dumps(PIPE_TEXTS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    expected = [[list(ent) for ent in entities(doc)] for doc in trained.pipe(PIPE_TEXTS)]
    assert any(expected)
    assert out["one"] == expected
    assert out["two"] == expected
    assert out["threads"] == [1]  # each worker runs torch on one thread: N workers, N cores


def test_2_pickled_pipeline_predicts_the_same(trained):
    texts = [text for text, _ in EN_TRAIN] + ["", "\n"]
    expected = [entities(doc) for doc in trained.pipe(texts)]
    clone = pickle.loads(pickle.dumps(trained))
    assert [entities(doc) for doc in clone.pipe(texts)] == expected
    assert clone.to_bytes() == trained.to_bytes()


def test_pipe_batch_size_1_equals_64(trained):
    """Issue 8 §5: batching does not change predictions (padding never leaks)."""
    texts = PIPE_TEXTS + WHITESPACE_TEXTS + [" ".join(WORDS * 4)]
    one = [entities(doc) for doc in trained.pipe(texts, batch_size=1)]
    assert any(one)
    assert [entities(doc) for doc in trained.pipe(texts, batch_size=64)] == one


# --- 3. empty first example with a transformer listener ---------------------------


def test_3_empty_first_example_with_a_listener(tiny_bert):
    nlp = listener_nlp(tiny_bert, BILSTM, window=32, stride=24)
    exs = [Example.from_dict(nlp.make_doc(""), {"entities": []})] + examples(nlp)
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: exs)
    assert nlp.get_pipe("crf_ner").model.get_ref("encoder").get_dim("nI") == 32  # the BERT's width
    losses = [nlp.update(exs, sgd=optimizer)["crf_ner"] for _ in range(3)]
    assert all(numpy.isfinite(losses)) and losses[0] > 0
    assert [d.ents for d in nlp.pipe(["", "Alice lives in Paris"])][0] == ()


def test_3_all_empty_sample_is_a_clear_error():
    nlp = tiny_nlp()
    exs = [Example.from_dict(nlp.make_doc(""), {"entities": []}) for _ in range(3)]
    with pytest.raises(ValueError, match=r"\[E923\].*'crf_ner'.*Every example's doc is empty"):
        nlp.get_pipe("crf_ner").initialize(lambda: exs, nlp=nlp, labels=["PER"])


# --- 4. uninitialized pipelines save and load ---------------------------------------


def test_4_uninitialized_pipeline_saves_loads_and_trains(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("crf_ner").add_label("PER")
    nlp.to_disk(tmp_path / "blank")
    loaded = spacy.load(tmp_path / "blank")
    ner = loaded.get_pipe("crf_ner")
    assert ner.labels == ("PER",) and not ner.is_initialized
    losses = train(loaded, steps=12)
    assert ner.labels == ("PER", "LOC", "ORG")  # the saved label first, then those of the data
    assert losses[-1] < losses[0] / 2
    # and once trained it saves and loads as any pipeline
    loaded.to_disk(tmp_path / "trained")
    texts = [text for text, _ in EN_TRAIN]
    again = spacy.load(tmp_path / "trained")
    assert [entities(d) for d in again.pipe(texts)] == [entities(d) for d in loaded.pipe(texts)]


# --- 5. whitespace and sentence boundaries -----------------------------------------


@pytest.mark.parametrize("scheme", ["BIO", "BILUO"])
def test_5_no_entity_on_whitespace(scheme):
    nlp = tiny_nlp(scheme=scheme)
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
def test_5_no_entity_crosses_a_sentence_start(scheme):
    nlp = tiny_nlp(scheme=scheme)
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


# --- 6. non-finite scores --------------------------------------------------------------


@pytest.mark.parametrize("value", [numpy.nan, numpy.inf])
def test_6_non_finite_scores_raise_naming_the_component(value):
    nlp = tiny_nlp()
    train(nlp, steps=2)
    emission = nlp.get_pipe("crf_ner").model.get_ref("emission")
    weights = emission.get_param("W").copy()
    weights[0, 0] = value
    emission.set_param("W", weights)
    with pytest.raises(ValueError, match=r"'crf_ner'.*NaN or infinite"):
        nlp("Alice lives in Paris")
    with pytest.raises(ValueError, match=r"'crf_ner'.*NaN or infinite"):
        list(nlp.pipe(["", "Bob works at Google"]))


# --- 7. rehearse -----------------------------------------------------------------------


@pytest.mark.parametrize("head_lr_scale", [1.0, 5.0])
def test_7_rehearse_learns_the_teachers_tags(head_lr_scale):
    nlp = tiny_nlp(head_lr_scale=head_lr_scale)
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


def test_7_rehearse_without_resume_training_is_an_error():
    nlp = tiny_nlp()
    train(nlp, steps=2)
    raw = [Example(nlp.make_doc("Alice lives in Paris"), nlp.make_doc("Alice lives in Paris"))]
    with pytest.raises(ValueError, match=r"'crf_ner'.*nlp\.resume_training\(\)"):
        nlp.rehearse(raw)


# --- also: seeded tiny BERT, dropout ----------------------------------------------------


def test_tiny_bert_is_seeded(tmp_path):
    words = ["alice", "paris"]
    torch.manual_seed(1)
    first = build_tiny_bert(tmp_path / "a", words, width=16, depth=1)
    torch.manual_seed(2)  # the global RNG state plays no part
    second = build_tiny_bert(tmp_path / "b", words, width=16, depth=1)
    other = build_tiny_bert(tmp_path / "c", words, width=16, depth=1, seed=1)
    weights = sorted(path.name for path in first.iterdir() if path.suffix in (".safetensors", ".bin"))
    assert weights
    for name in weights:
        assert (first / name).read_bytes() == (second / name).read_bytes()
        assert (first / name).read_bytes() != (other / name).read_bytes()


def test_update_with_drop_0_is_deterministic():
    """`drop` reaches the Thinc layers: after an update with drop=0.5 has set
    their rates, drop=0.0 turns dropout off again, whatever the RNG state."""

    def weights_after_updates(seed: int) -> bytes:
        nlp = tiny_nlp(NO_ENCODER)
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
        nlp = tiny_nlp({**BILSTM, "dropout": dropout})
        train(nlp, steps=1)
        nlp.update(examples(nlp), drop=drop)
        ner = nlp.get_pipe("crf_ner")
        rates = {node.attrs["dropout_rate"] for node in ner.model.get_ref("tok2vec").walk() if node.name == "dropout"}
        encoder = ner.model.get_ref("encoder")
        X = [numpy.ones((6, 16), dtype="f")]
        return rates, [encoder.begin_update(X)[0][0] for _ in range(2)]

    rates, (first, second) = train_outputs(dropout=0.0, drop=0.5)
    assert rates == {0.5}
    numpy.testing.assert_array_equal(first, second)  # drop=0.5 did not reach the BiLSTM
    rates, (first, second) = train_outputs(dropout=0.5, drop=0.0)
    assert rates == {0.0}
    assert not numpy.array_equal(first, second)  # drop=0.0 did not turn the BiLSTM's off


# --- damaged pipeline folders --------------------------------------------------------------


def damaged_copy(saved: Path, tmp_path: Path) -> Path:
    path = tmp_path / "damaged"
    shutil.copytree(saved, path)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ValueError) as error:
        spacy.load(path)
    message = str(error.value)
    assert "'crf_ner'" in message
    assert "size mismatch" not in message and "state_dict" not in message
    return message


def test_truncated_model_file(saved, tmp_path):
    path = damaged_copy(saved, tmp_path)
    model = path / "crf_ner" / "model"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    message = load_error(path)
    assert str(model) in message and "damaged" in message


def test_missing_cfg_file(saved, tmp_path):
    path = damaged_copy(saved, tmp_path)
    (path / "crf_ner" / "cfg").unlink()
    message = load_error(path)
    assert message == f"Cannot load component 'crf_ner': {path / 'crf_ner' / 'cfg'} is missing."


def test_cfg_with_fewer_labels_than_the_weights(saved, tmp_path):
    path = damaged_copy(saved, tmp_path)
    cfg_path = path / "crf_ner" / "cfg"
    cfg = json.loads(cfg_path.read_text(encoding="utf8"))
    assert cfg["labels"] == ["LOC", "ORG", "PER"]
    cfg["labels"] = ["LOC", "ORG"]
    cfg_path.write_text(json.dumps(cfg), encoding="utf8")
    message = load_error(path)
    assert str(cfg_path) in message and "2 labels" in message and "13 tags" in message


@pytest.mark.parametrize(
    "encoder,saved_as,config_builds",
    [
        (IDCNN, "bilstm_encoder(hidden_width=8, depth=1)", "idcnn_encoder(width=16,"),
        (NO_ENCODER, "[crf, bilstm_encoder(hidden_width=8, depth=1)]", "the config builds [crf]."),
        ({**BILSTM, "hidden_width": 12}, "hidden_width=8", "hidden_width=12"),
        ({**BILSTM, "depth": 2}, "depth=1", "depth=2"),
    ],
    ids=["idcnn", "none", "wider", "deeper"],
)
def test_config_naming_another_encoder(saved, tmp_path, encoder, saved_as, config_builds):
    path = damaged_copy(saved, tmp_path)
    config = Config().from_disk(path / "config.cfg", interpolate=False)
    config["components"]["crf_ner"]["model"]["encoder"] = encoder
    config.to_disk(path / "config.cfg")
    message = load_error(path)
    assert str(path / "crf_ner" / "model") in message
    assert saved_as in message and config_builds in message

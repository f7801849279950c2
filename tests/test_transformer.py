"""The transformer path end to end, with a tiny BERT built locally at random; and every config through `spacy train`."""

import subprocess
import sys
from pathlib import Path

import numpy
import pytest
import spacy
import torch
from spacy.language import Language
from spacy.training import Example
from thinc.api import fix_random_seed

from spacy_bilstm_crf.testing import build_tiny_bert

from .pipelines import entities, examples, inline_nlp, listener_nlp, train
from .tiny_data import EN_TRAIN

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*/*.cfg"))
HEAD = {"head_lr_scale": 20.0}  # the tiny BERT's random features need a quick head


@pytest.fixture(scope="module")
def trained_listener(tiny_bert) -> Language:
    nlp = listener_nlp(tiny_bert, window=8, stride=6, **HEAD)
    train(nlp, steps=40)
    return nlp


def test_listener_learns_and_gradients_reach_the_transformer(tiny_bert):
    nlp = listener_nlp(tiny_bert, **HEAD)
    exs = examples(nlp)
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: exs)
    bert = next(node.shims[0]._model for node in nlp.get_pipe("transformer").model.walk() if node.shims)
    before = bert.embeddings.word_embeddings.weight.detach().clone()
    first = nlp.update(exs, sgd=optimizer)["crf_ner"]
    for _ in range(30):
        last = nlp.update(exs, sgd=optimizer)["crf_ner"]
    after = bert.embeddings.word_embeddings.weight.detach()
    assert not numpy.allclose(before.numpy(), after.numpy())
    assert last < first / 2


def test_long_docs_keep_every_token(trained_listener):
    """A doc much longer than the transformer window (8 wordpieces, stride 6)."""
    text = " ".join(["Alice lives in Paris and Bob works at Google in London ."] * 6)
    doc = trained_listener(text)
    scores = trained_listener.get_pipe("crf_ner").model.predict([doc])
    assert scores[0].shape[0] == len(doc) == 72
    # each repeat of the sentence is tagged alike: windows and strides do not lose tokens
    first = [(e.start, e.end, e.label_) for e in doc.ents if e.end <= 12]
    assert first and all(
        [(e.start - 12 * k, e.end - 12 * k, e.label_) for e in doc.ents if 12 * k <= e.start < 12 * (k + 1)] == first
        for k in range(6)
    )


def test_listener_pipe_equals_call_and_round_trip(trained_listener, tiny_bert):
    texts = [text for text, _ in EN_TRAIN] + ["", "Paris"]
    expected = [entities(trained_listener(text)) for text in texts]
    assert [entities(doc) for doc in trained_listener.pipe(texts, batch_size=3)] == expected
    data = trained_listener.to_bytes()
    reloaded = listener_nlp(tiny_bert, window=8, stride=6, **HEAD).from_bytes(data)
    assert [entities(doc) for doc in reloaded.pipe(texts)] == expected


def test_inline_transformer_tok2vec(tiny_bert, tmp_path):
    nlp = inline_nlp(tiny_bert, window=16, stride=12)
    train(nlp, steps=20)
    texts = [text for text, _ in EN_TRAIN]
    expected = [entities(doc) for doc in nlp.pipe(texts)]
    nlp.to_disk(tmp_path / "inline")
    loaded = spacy.load(tmp_path / "inline")
    assert [entities(doc) for doc in loaded.pipe(texts)] == expected


def test_empty_first_example_with_a_listener(tiny_bert):
    nlp = listener_nlp(tiny_bert, window=32, stride=24)
    exs = [Example.from_dict(nlp.make_doc(""), {"entities": []})] + examples(nlp)
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: exs)
    assert nlp.get_pipe("crf_ner").model.get_ref("encoder").get_dim("nI") == 32  # the BERT's width
    losses = [nlp.update(exs, sgd=optimizer)["crf_ner"] for _ in range(3)]
    assert all(numpy.isfinite(losses)) and losses[0] > 0
    assert [d.ents for d in nlp.pipe(["", "Alice lives in Paris"])][0] == ()


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


@pytest.mark.slow
def test_configs_are_generated_from_the_template():
    result = subprocess.run([sys.executable, str(REPO / "configs" / "generate.py"), "--check"], capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    assert len(CONFIGS) == 12


@pytest.mark.slow
@pytest.mark.parametrize("config", CONFIGS, ids=[f"{p.parent.name}/{p.stem}" for p in CONFIGS])
def test_spacy_train_cli_runs_every_config(config, tiny_bert, en_corpus, zh_corpus, tmp_path):
    corpus = zh_corpus if config.parent.name == "zh" else en_corpus
    command = [
        sys.executable,
        "-m",
        "spacy",
        "train",
        str(config),
        "--output",
        str(tmp_path / "out"),
        "--paths.train",
        str(corpus / "train.spacy"),
        "--paths.dev",
        str(corpus / "dev.spacy"),
        "--training.max_steps",
        "4",
        "--training.eval_frequency",
        "2",
        "--training.logger.progress_bar",
        "false",
    ]
    if config.stem.startswith("bert"):
        command += ["--vars.transformer", str(tiny_bert)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ENTS_F" in result.stdout
    nlp = spacy.load(tmp_path / "out" / "model-last")
    assert nlp.get_pipe("crf_ner").labels == ("LOC", "ORG", "PER")
    doc = nlp("张三住在北京" if config.parent.name == "zh" else "Alice lives in Paris")
    assert len(doc) == (6 if config.parent.name == "zh" else 4)  # the config's tokenizer: a token per character

"""Shared fixtures: tiny training data, a tiny BERT built locally at random, and a trained pipeline."""

from pathlib import Path
from typing import Any, Dict, List

import catalogue
import pytest
import spacy
import torch
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from spacy_bilstm_crf.testing import build_tiny_bert

from .pipelines import make_nlp, train
from .tiny_data import EN_TRAIN, ZH_TRAIN, en_docs, zh_docs

# The tests' tensors are tiny: one torch thread is as fast on an idle machine and
# many times faster on a busy one (OpenMP threads spin while they wait). Tests
# that start processes (multiprocessing, spacy train) keep torch's default there.
torch.set_num_threads(1)


class _EntryPointsByGroup:
    """The installed entry points, each group looked up once. catalogue scans
    every entry point of the environment on each registry lookup (srsly does one
    per msgpack call, spaCy one per Language): about a fifth of the fast tier's
    time with Ray, torch and transformers installed. Same entry points, found faster."""

    def __init__(self, entry_points: Any) -> None:
        self._entry_points = entry_points
        self._by_group: Dict[str, List[Any]] = {}

    def select(self, *, group: str) -> List[Any]:
        if group not in self._by_group:
            self._by_group[group] = list(self._entry_points.select(group=group))
        return list(self._by_group[group])


catalogue.AVAILABLE_ENTRY_POINTS = _EntryPointsByGroup(catalogue.AVAILABLE_ENTRY_POINTS)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer BERT of width 32 with random weights whose vocabulary holds the
    words and characters of the tiny data. Nothing is downloaded."""
    words = [w for text, _ in EN_TRAIN for w in text.split()] + ["the", "is", "a"]
    chars = [c for text, _ in ZH_TRAIN for c in text]
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), words + chars)


def write_corpus(path: Path, docs: List[Doc]) -> Path:
    DocBin(docs=docs).to_disk(path / "train.spacy")
    DocBin(docs=docs).to_disk(path / "dev.spacy")
    return path


@pytest.fixture(scope="session")
def en_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train.spacy and dev.spacy with the English examples."""
    return write_corpus(tmp_path_factory.mktemp("en-corpus"), en_docs(spacy.blank("en")))


@pytest.fixture(scope="session")
def zh_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train.spacy and dev.spacy with the Chinese examples."""
    return write_corpus(tmp_path_factory.mktemp("zh-corpus"), zh_docs(spacy.blank("zh")))


@pytest.fixture(scope="session")
def trained_pipeline() -> Language:
    """crf_ner over the small CPU tok2vec and BiLSTM (tests/pipelines.py),
    trained until it tags the English examples right. Shared: do not change it."""
    nlp = make_nlp()
    train(nlp, steps=60)
    return nlp


@pytest.fixture(scope="session")
def saved_pipeline(trained_pipeline: Language, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``trained_pipeline`` saved to a folder (copy it before damaging it)."""
    path = tmp_path_factory.mktemp("saved") / "pipeline"
    trained_pipeline.to_disk(path)
    return path

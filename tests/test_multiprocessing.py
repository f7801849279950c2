"""crf_ner across processes: nlp.pipe(n_process=2) with fork and spawn, and pickling."""

import json
import os
import pickle
import subprocess
import sys

import pytest

from spacy_bilstm_crf.threads import THREADS_ENV

from .pipelines import entities
from .tiny_data import EN_TRAIN

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
def test_pipe_with_two_processes_equals_one_process(saved_pipeline, trained_pipeline, method, tmp_path):
    """A hang fails at the timeout instead of blocking the suite."""
    script = tmp_path / "pipe_two.py"
    script.write_text(PIPE_SCRIPT, encoding="utf8")
    done = subprocess.run(
        [sys.executable, str(script), method, str(saved_pipeline), json.dumps(PIPE_TEXTS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    expected = [[list(ent) for ent in entities(doc)] for doc in trained_pipeline.pipe(PIPE_TEXTS)]
    assert any(expected)
    assert out["one"] == expected
    assert out["two"] == expected
    assert out["threads"] == [1]  # each worker runs torch on one thread: N workers, N cores


@pytest.mark.slow
@pytest.mark.parametrize("method, threads", [("fork", 1), ("spawn", 2)])
def test_spawned_workers_take_the_thread_count_that_is_asked_for(saved_pipeline, tmp_path, method, threads):
    """A forked worker stays on one thread: torch's pool, used by the parent,
    would hang it."""
    script = tmp_path / "pipe_two.py"
    script.write_text(PIPE_SCRIPT, encoding="utf8")
    env = {**os.environ, THREADS_ENV: "2"}
    done = subprocess.run(
        [sys.executable, str(script), method, str(saved_pipeline), json.dumps(PIPE_TEXTS)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["threads"] == [threads]


def test_pickled_pipeline_predicts_the_same(trained_pipeline):
    texts = [text for text, _ in EN_TRAIN] + ["", "\n"]
    expected = [entities(doc) for doc in trained_pipeline.pipe(texts)]
    clone = pickle.loads(pickle.dumps(trained_pipeline))
    assert [entities(doc) for doc in clone.pipe(texts)] == expected
    assert clone.to_bytes() == trained_pipeline.to_bytes()

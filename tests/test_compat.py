"""Pipelines saved by earlier releases load and predict what they predicted then.

tests/data/legacy-0.1.0 holds small pipelines saved by 0.1.0 (commit d855cd4,
made by its make_fixture.py) with the entities they predicted at that time.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import spacy

LEGACY = Path(__file__).parent / "data" / "legacy-0.1.0"
EXPECTED = json.loads((LEGACY / "expected.json").read_text(encoding="utf8"))


def entities(nlp, texts):
    return [[[e.start_char, e.end_char, e.label_] for e in doc.ents] for doc in nlp.pipe(texts)]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED["pipelines"]))
def test_legacy_pipeline_predicts_as_it_did(name):
    nlp = spacy.load(LEGACY / name)
    assert entities(nlp, EXPECTED["texts"]) == EXPECTED["pipelines"][name]
    # and it saves and loads again with the current code, byte for byte
    reloaded = spacy.load(LEGACY / name).from_bytes(nlp.to_bytes())
    assert reloaded.get_pipe("crf_ner").to_bytes() == nlp.get_pipe("crf_ner").to_bytes()


@pytest.mark.slow
def test_saved_pipeline_predicts_the_same_in_a_fresh_process():
    name = "bilstm-biluo"
    code = (
        "import json, sys, spacy; nlp = spacy.load(sys.argv[1]); texts = json.loads(sys.argv[2]);"
        "print(json.dumps([[[e.start_char, e.end_char, e.label_] for e in d.ents] for d in nlp.pipe(texts)]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(LEGACY / name), json.dumps(EXPECTED["texts"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == EXPECTED["pipelines"][name]

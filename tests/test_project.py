"""The spaCy project workflow (reduced) and the model wheel it packages."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.vocab import Vocab

from .pipelines import venv_with_package, wheel_metadata
from .tiny_data import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = ["张三在北京的微软公司工作。", "李明昨天从上海飞往香港。"]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the project after `spacy project run all` on 40 sentences and 300 steps (the Chinese
    CPU recipe warms up for 200 steps: fewer would leave a pipeline that finds nothing)."""
    path = tmp_path_factory.mktemp("project")
    shutil.copy(REPO / "project.yml", path / "project.yml")
    shutil.copytree(REPO / "configs", path / "configs")
    command = [
        sys.executable,
        "-m",
        "spacy",
        "project",
        "run",
        "all",
        str(path),
        "--vars.limit",
        "40",
        "--vars.max_steps",
        "300",
        "--vars.eval_frequency",
        "100",
        "--vars.local_data",
        str(SHARED_DATA),  # a download from PyPI when absent
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (path / "stdout.txt").write_text(result.stdout, encoding="utf8")
    return path


@pytest.mark.slow
def test_workflow_outputs(project):
    stdout = (project / "stdout.txt").read_text(encoding="utf8")
    for step in ("assets", "convert", "train", "evaluate", "package", "predict"):
        assert f" {step} =" in stdout
    assert "sentences: 40" in stdout  # convert's summary of the limited train file
    metrics = json.loads((project / "metrics" / "msra-cnn_bilstm_crf.json").read_text(encoding="utf8"))
    assert {"ents_p", "ents_r", "ents_f"} <= set(metrics)
    assert set(metrics["ents_per_type"]) <= {"PER", "LOC", "ORG"}
    html = (project / "metrics" / "msra-cnn_bilstm_crf.html").read_text(encoding="utf8")
    assert html.count('class="entities"') == 25
    assert "-> " in stdout and EXAMPLES[0] in stdout
    for split in ("train", "dev", "test"):
        assert (project / "corpus" / "msra" / f"{split}.spacy").exists()


@pytest.mark.slow
def test_model_wheel_installs_and_runs_in_a_fresh_venv(project, tmp_path):
    wheels = list((project / "packages").glob("*/dist/*.whl"))
    assert len(wheels) == 1
    model_wheel = wheels[0]
    assert "Requires-Dist: spacy-bilstm-crf[torch]" in wheel_metadata(model_wheel)
    python = venv_with_package(tmp_path, "torch==2.13.0", str(model_wheel))

    train_docs = DocBin().from_disk(project / "corpus" / "msra" / "train.spacy").get_docs(Vocab())
    texts = EXAMPLES + [doc.text for doc in train_docs if doc.ents][:4]
    # Nothing may be downloaded at run time (jieba's dictionary is in its package): no sockets.
    script = (
        "import json, socket, sys\n"
        "class NoNetwork(socket.socket):\n"
        "    def connect(self, *args):\n"
        "        raise OSError('the packaged pipeline tried to open a network connection')\n"
        "    connect_ex = connect\n"
        "socket.socket = NoNetwork\n"
        "import spacy\n"
        "nlp = spacy.load('zh_crf_ner_msra')\n"
        "assert nlp.config['components']['crf_ner']['model']['tok2vec']['embed']['@architectures'] =="
        " 'spacy-bilstm-crf.CharNgramEmbed.v1'\n"
        "docs = nlp.pipe(json.loads(sys.argv[1]))\n"
        "print(json.dumps([[(e.start, e.end, e.label_) for e in d.ents] for d in docs]))\n"
    )
    result = subprocess.run(
        [str(python), "-c", script, json.dumps(texts)], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    in_venv = json.loads(result.stdout.strip().splitlines()[-1])
    local = spacy.load(project / "training" / "msra" / "cnn_bilstm_crf" / "model-best")
    expected = [[[e.start, e.end, e.label_] for e in doc.ents] for doc in local.pipe(texts)]
    assert in_venv == expected
    assert any(in_venv), "the packaged pipeline found no entity at all"

"""Entry points, and the README's commands and example kept true."""

import re
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf8")

REGISTERED = {
    "spacy_factories": {"crf_ner"},
    "spacy_architectures": {
        "spacy-bilstm-crf.CRFTagger.v1",
        "spacy-bilstm-crf.BiLSTMEncoder.v1",
        "spacy-bilstm-crf.IDCNNEncoder.v1",
        "spacy-bilstm-crf.IDCNNEncoder.v2",
        "spacy-bilstm-crf.NoEncoder.v1",
        "spacy-bilstm-crf.CharNgramEmbed.v1",
    },
}


def test_entry_points_are_installed():
    for group, names in REGISTERED.items():
        found = {ep.name: ep for ep in entry_points(group=group)}
        assert names <= set(found), group
        for name in names:
            assert callable(found[name].load()), name


@pytest.mark.slow
def test_spacy_finds_everything_without_an_import():
    script = (
        "import sys, spacy\n"
        "from spacy.util import registry\n"
        "nlp = spacy.blank('en')\n"
        "nlp.add_pipe('crf_ner')\n"
        "for name in ('BiLSTMEncoder', 'IDCNNEncoder', 'NoEncoder'):\n"
        "    registry.resolve({'x': {'@architectures': f'spacy-bilstm-crf.{name}.v1'}})\n"
        "print(nlp.pipe_names)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['crf_ner']"


def code_blocks(language: str):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    before_prose = README.split("\n\n", 1)[1].split("\n\nThe first command")[0]
    commands = re.findall(r"```bash\n(.*?)\n```", before_prose, flags=re.S)
    assert len(commands) == 2
    assert "spacy project run all" in commands[0]
    assert "pytest" in commands[1]
    assert commands[1] in (REPO / ".ci" / "run").read_text(encoding="utf8")


@pytest.mark.slow
def test_readme_python_example_runs():
    example = code_blocks("python")[0]
    namespace: dict = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["nlp"].pipe_names == ["crf_ner"]

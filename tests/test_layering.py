"""The layering the package promises: data tools load no torch, the pipeline
talks to Thinc layers only, and span/tag conversion is defined once."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .tiny_data import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]

LOADED_HEAVY = "import sys; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'thinc', 'spacy'}))"


def heavy_modules_after(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{LOADED_HEAVY}"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "code",
    [
        "import spacy_bilstm_crf",
        "import spacy_bilstm_crf.convert",
        "from spacy_bilstm_crf.cli import main\ntry:\n    main(['convert', '--help'])\nexcept SystemExit:\n    pass",
        "from spacy_bilstm_crf.cli import main\ntry:\n    main(['fetch', '--help'])\nexcept SystemExit:\n    pass",
    ],
)
def test_data_tools_load_no_torch(code):
    assert heavy_modules_after(code) == "[]"


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared data not available")
def test_fetch_loads_no_torch(tmp_path):
    args = ["fetch", "msra", str(tmp_path / "msra"), "--local", str(SHARED_DATA), "--limit", "5"]
    code = f"from spacy_bilstm_crf.cli import main\nassert main({args!r}) == 0"
    assert heavy_modules_after(code) == "[]"
    assert (tmp_path / "msra" / "train.txt").exists()


def test_pipeline_imports_no_torch():
    for path in (REPO / "spacy_bilstm_crf" / "pipeline").glob("*.py"):
        source = path.read_text(encoding="utf8")
        assert not re.search(r"^\s*(import torch|from torch|from \.\.modules)", source, re.M), path


def test_span_tag_conversion_is_defined_once():
    pattern = re.compile(r"^\s*def (\w*(spans_to_tags|tags_to_spans|to_spans|to_tags)\w*)\(", re.M)
    found = [
        (path.relative_to(REPO).as_posix(), match.group(1))
        for folder in ("spacy_bilstm_crf", "bench")
        for path in sorted((REPO / folder).rglob("*.py"))
        for match in pattern.finditer(path.read_text(encoding="utf8"))
    ]
    assert found == [
        ("spacy_bilstm_crf/tag_scheme.py", "tags_to_spans"),
        ("spacy_bilstm_crf/tag_scheme.py", "spans_to_tags"),
    ]

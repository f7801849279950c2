"""The layering the package promises.

- Data tools (convert, fetch) load no torch, thinc or spaCy.
- ``pipeline/`` imports no torch *directly* and nothing from ``modules/``: it
  talks to Thinc layers (``layers/``, ``models/``). It does load torch
  through those layers, by design: a ``crf_ner`` component runs torch.
- ``explain/`` and ``bench/`` use the component's inference API
  (``emission_scores``, ``decode``, ``marginals``, ``entity_probs``,
  ``kbest_paths``, ``transition_scores``) and import nothing from
  ``modules/`` or ``layers/``; only ``bench/micro.py``, which times the CRF
  layer itself, imports ``layers/``.
- What an exported pipeline runs (``runtime/``, the numpy CRF layer, the
  ONNX scorer, the exported tagger, the character features, ``threads``)
  imports no torch and none of the torch layers: it loads without torch
  (tests/test_onnx_export.py loads one with torch blocked).
- Span/tag conversion is defined once.

Imports are read from the syntax tree, so an import inside a function or
under another name counts too.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from .tiny_data import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "spacy_bilstm_crf"

LOADED_HEAVY = "import sys; print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'thinc', 'spacy'}))"


def heavy_modules_after(code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{LOADED_HEAVY}"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def imported_modules(path: Path, root: Path = REPO) -> Iterator[Tuple[int, str]]:
    """(line, absolute module name) of every import in the file at ``path``
    (``from ..x import y``: the module ``x``, of which ``y`` is part)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    package = parts[:-1]  # the package the file is in
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names = [module] if node.module else [f"{module}.{alias.name}" for alias in node.names]
            for name in names:
                yield node.lineno, name


def violations(folder: Path, forbidden: Tuple[str, ...], allowed_files: Tuple[str, ...] = ()) -> List[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        if relative in allowed_files:
            continue
        for line, module in imported_modules(path):
            if any(module == prefix or module.startswith(prefix + ".") for prefix in forbidden):
                found.append(f"{relative}:{line} imports {module}")
    return found


def test_imported_modules_resolves_relative_and_nested_imports(tmp_path):
    source = tmp_path / "spacy_bilstm_crf" / "explain" / "probe.py"
    source.parent.mkdir(parents=True)
    source.write_text("def f():\n    from ..modules import crf\n    import torch as t\nfrom . import data\n")
    assert sorted(imported_modules(source, root=tmp_path)) == [
        (2, "spacy_bilstm_crf.modules"),
        (3, "torch"),
        (4, "spacy_bilstm_crf.explain.data"),
    ]


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


@pytest.mark.slow
@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared data not available")
def test_fetch_loads_no_torch(tmp_path):
    args = ["fetch", "msra", str(tmp_path / "msra"), "--local", str(SHARED_DATA), "--limit", "5"]
    code = f"from spacy_bilstm_crf.cli import main\nassert main({args!r}) == 0"
    assert heavy_modules_after(code) == "[]"
    assert (tmp_path / "msra" / "train.txt").exists()


def test_pipeline_imports_no_torch_directly_and_no_modules():
    assert violations(PACKAGE / "pipeline", ("torch", "spacy_bilstm_crf.modules")) == []


TORCH_FREE = (
    "spacy_bilstm_crf/runtime",
    "spacy_bilstm_crf/layers/crf_numpy.py",
    "spacy_bilstm_crf/layers/onnx_scorer.py",
    "spacy_bilstm_crf/layers/char_features.py",
    "spacy_bilstm_crf/layers/sequences.py",
    "spacy_bilstm_crf/layers/lazy_torch.py",
    "spacy_bilstm_crf/models/onnx_tagger.py",
    "spacy_bilstm_crf/models/dense_tail.py",
    "spacy_bilstm_crf/models/char_embed.py",
    "spacy_bilstm_crf/threads.py",
    "spacy_bilstm_crf/pipeline",
)
TORCH_LAYERS = (
    "spacy_bilstm_crf.modules",
    "spacy_bilstm_crf.layers.crf",
    "spacy_bilstm_crf.layers.encoder",
    "spacy_bilstm_crf.models.crf_tagger",
    "spacy_bilstm_crf.models.encoders",
    "spacy_bilstm_crf.export",
)


def top_level_torch_imports(part: str) -> List[str]:
    """Module-level imports of torch or of the torch layers in the file or folder ``part``."""
    path = REPO / part
    found = []
    for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
        tree = ast.parse(file.read_text(encoding="utf8"))
        top_lines = {node.lineno for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))}
        for line, module in imported_modules(file):
            if line in top_lines and any(
                module == prefix or module.startswith(prefix + ".") for prefix in ("torch", *TORCH_LAYERS)
            ):
                found.append(f"{file.relative_to(REPO)}:{line} imports {module}")
    return found


@pytest.mark.parametrize("part", TORCH_FREE)
def test_what_an_exported_pipeline_runs_imports_no_torch_at_module_level(part):
    """Module-level imports only: the pipeline picks the torch CRF's functions
    inside a function, for torch models (``crf_functions``); lazy_torch and
    sequences import torch inside the functions that build torch objects."""
    assert top_level_torch_imports(part) == []


def test_the_torch_import_check_finds_torch_imports():
    found = top_level_torch_imports("spacy_bilstm_crf/layers/crf.py")
    assert [entry.split(" imports ")[1] for entry in found] == ["torch", "spacy_bilstm_crf.modules.crf"]


def test_explain_and_bench_use_the_components_inference_api():
    internals = ("spacy_bilstm_crf.modules", "spacy_bilstm_crf.layers")
    assert violations(PACKAGE / "explain", internals) == []
    assert violations(REPO / "bench", internals, allowed_files=("bench/micro.py",)) == []


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

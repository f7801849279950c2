"""Where a cell's figures come from: the package code's hash, the commit,
the machine and its load."""

import hashlib
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from .common import REPO

# What ``package_hash`` covers: the code and configs that the systems run.
PACKAGE_GLOBS = ("spacy_bilstm_crf/**/*.py", "configs/**/*")
PACKAGE_FILES = ("pyproject.toml",)
# The same as paths for ``git status``.
PACKAGE_PATHS = ("spacy_bilstm_crf", "configs", "pyproject.toml")
BENCH_GLOBS = ("bench/*.py",)


def _files(root: Path, globs: Iterable[str], files: Iterable[str] = ()) -> List[Path]:
    found = {p for pattern in globs for p in root.glob(pattern) if p.is_file() and "__pycache__" not in p.parts}
    found |= {root / name for name in files if (root / name).is_file()}
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def tree_hash(root: Path, globs: Iterable[str], files: Iterable[str] = ()) -> str:
    """sha256 over the sorted relative paths and contents of the matching files."""
    digest = hashlib.sha256()
    for path in _files(root, globs, files):
        digest.update(path.relative_to(root).as_posix().encode("utf8") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def package_hash(root: Path = REPO) -> str:
    """The hash of ``spacy_bilstm_crf/**/*.py``, ``configs/**`` and ``pyproject.toml``."""
    return tree_hash(root, PACKAGE_GLOBS, PACKAGE_FILES)


def bench_hash(root: Path = REPO) -> str:
    """The hash of the benchmark's own code (recorded, not used to skip cells)."""
    return tree_hash(root, BENCH_GLOBS)


def head_commit(root: Path = REPO) -> Optional[str]:
    """HEAD's hash, None outside a git checkout."""
    return _git(root, "rev-parse", "HEAD") or None


def has_changes(paths: Iterable[str], root: Path = REPO) -> bool:
    """Whether git sees uncommitted changes (or untracked files) under ``paths``."""
    return bool(_git(root, "status", "--porcelain", "--", *paths))


def git_commit(root: Path = REPO) -> Dict[str, Any]:
    """HEAD's hash and whether the package sources differ from it."""
    return {"commit": head_commit(root), "package_dirty": has_changes(PACKAGE_PATHS, root)}


def _git(root: Path, *args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_name(device: str) -> str:
    """The CPU model, or the GPU's name for ``cuda``."""
    if device == "cuda":
        import torch

        return str(torch.cuda.get_device_name(0))
    return cpu_model()


def host_info() -> Dict[str, Any]:
    """The machine without importing anything: CPU model, cores, platform, Python."""
    return {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "hostname_hash": hashlib.sha256(platform.node().encode("utf8")).hexdigest()[:8],
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def library_versions(names: Iterable[str]) -> Dict[str, Optional[str]]:
    """The installed version of each distribution, None for one that is not installed."""
    found: Dict[str, Optional[str]] = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine_info() -> Dict[str, Any]:
    """``host_info``, torch's threads, the GPU and library versions (imports torch and spaCy)."""
    import numpy
    import spacy
    import thinc
    import torch

    return {
        **host_info(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": {
            "torch": torch.__version__,
            "spacy": spacy.__version__,
            "thinc": thinc.__version__,
            "numpy": numpy.__version__,
            **library_versions(("spacy-transformers", "transformers", "seqeval")),
        },
    }


def loadavg() -> List[float]:
    """The 1, 5 and 15 minute load averages, rounded to 2 decimals."""
    return [round(x, 2) for x in os.getloadavg()]

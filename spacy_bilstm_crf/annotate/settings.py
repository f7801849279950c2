"""What a run of ``annotate`` is asked to do: its settings, the input and
output formats they name (by the path's suffix unless given), and the optional
packages those need."""

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Literal, Optional, cast

# Read by Ray when it is imported: "0" makes a cluster started in this process
# use 127.0.0.1 (and listen there) instead of the machine's network address.
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@dataclass
class AnnotateSettings:
    """The settings of ``spacy-bilstm-crf annotate``; see the command's help."""

    model: str
    input: Path
    output: Path
    input_format: str = "auto"
    output_format: str = "auto"
    text_field: str = "text"
    id_field: str = "id"
    batch_size: int = 64
    n_process: int = 1
    shard_size: int = 10_000
    engine: str = "local"
    address: Optional[str] = None
    workers: Optional[int] = None
    gpu_per_worker: float = 0.0
    spans_key: Optional[str] = None
    strict: bool = False
    code: Optional[Path] = None
    progress_bar: Optional[bool] = None
    log_every: float = 30.0

    def check(self) -> None:
        """Refuse settings that cannot work, before anything is read."""
        if self.engine not in ("local", "ray"):
            raise ValueError(f"unknown engine {self.engine!r}: use local or ray")
        if self.id_field == "entities":
            raise ValueError("--id-field cannot be 'entities': output records hold the entities under that name")
        if self.engine == "local" and (self.address or self.workers or self.gpu_per_worker):
            raise ValueError("--address, --workers and --gpu-per-worker need --engine ray")
        if self.engine == "ray" and self.n_process != 1:
            raise ValueError("--n-process is for --engine local; use --workers with --engine ray")
        if self.gpu_per_worker < 0:
            raise ValueError(f"--gpu-per-worker must be positive, got {self.gpu_per_worker}")
        for name in ("batch_size", "n_process", "shard_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")
        if self.code is not None and not self.code.is_file():
            raise ValueError(f"--code {self.code}: no such file")


# --- formats -----------------------------------------------------------------------

InputFormat = Literal["jsonl", "text", "parquet"]
OutputFormat = Literal["jsonl", "parquet"]

INPUT_FORMATS = ("jsonl", "text", "parquet")
OUTPUT_FORMATS = ("jsonl", "parquet")
INPUT_SUFFIXES: Dict[str, InputFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".txt": "text",
    ".text": "text",
    ".parquet": "parquet",
    ".pq": "parquet",
}
OUTPUT_SUFFIXES: Dict[str, OutputFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}
PART_SUFFIX: Dict[OutputFormat, str] = {"jsonl": ".jsonl", "parquet": ".parquet"}


def input_format(path: Path, requested: str = "auto") -> InputFormat:
    """The format of INPUT: ``requested``, or its suffix; a folder holds Parquet files."""
    if requested != "auto":
        if requested not in INPUT_FORMATS:
            raise ValueError(f"unknown input format {requested!r}: use one of {', '.join(INPUT_FORMATS)}")
        return cast(InputFormat, requested)
    if path.is_dir():
        return "parquet"
    found = INPUT_SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ValueError(
            f"{path}: cannot tell the input format from the suffix {path.suffix!r}; "
            f"use {', '.join(sorted(INPUT_SUFFIXES))} or --input-format"
        )
    return found


def output_format(path: Path, requested: str = "auto") -> OutputFormat:
    """The format of OUTPUT: ``requested``, or the suffix of the output folder's name."""
    if requested != "auto":
        if requested not in OUTPUT_FORMATS:
            raise ValueError(f"unknown output format {requested!r}: use one of {', '.join(OUTPUT_FORMATS)}")
        return cast(OutputFormat, requested)
    found = OUTPUT_SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ValueError(
            f"{path}: cannot tell the output format from the suffix {path.suffix!r}; "
            "name the output folder *.jsonl or *.parquet, or use --format"
        )
    return found


# --- optional packages -------------------------------------------------------------


def import_pyarrow() -> Any:
    """pyarrow, or an error that says how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise ValueError('Parquet input or output needs pyarrow: pip install "spacy-bilstm-crf[parquet]"') from exc
    return pyarrow


def import_ray(starts_cluster: bool) -> None:
    """Ray Data, or an error that says how to install it. For a cluster that
    annotate starts itself (no ``--address``), Ray is told first to use loopback
    addresses only: by default its local cluster listens on every interface.
    ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1`` in the environment keeps Ray's
    default."""
    if starts_cluster and "ray" not in sys.modules:
        os.environ.setdefault(LOOPBACK_ONLY, "0")
    try:
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ValueError('--engine ray needs Ray Data: pip install "spacy-bilstm-crf[ray]"') from exc

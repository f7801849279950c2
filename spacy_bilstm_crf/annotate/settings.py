"""What a run of ``annotate`` is asked to do."""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


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

"""Small helpers shared by the benchmark scripts: timing, memory, machine, JSON."""

import json
import os
import platform
import resource
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data"
GET_MINILM = REPO.parent / "shared" / "bin" / "get-minilm"


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (VmHWM)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def spread(values: Sequence[float]) -> Dict[str, Any]:
    """Median, min, max and the raw values of repeated measurements."""
    vals = [float(v) for v in values]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0, "values": []}
    return {
        "median": statistics.median(vals),
        "min": min(vals),
        "max": max(vals),
        "n": len(vals),
        "values": vals,
    }


def timed_repeats(func: Callable[[], Any], repeats: int, warmup: int = 1) -> List[float]:
    """Wall seconds of ``repeats`` calls of ``func`` after ``warmup`` calls."""
    for _ in range(warmup):
        func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return times


def git_commit() -> Dict[str, Any]:
    """HEAD's hash and whether the package sources differ from it."""

    def git(*args: str) -> str:
        try:
            out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=True)
            return out.stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    dirty = git("status", "--porcelain", "--", "spacy_bilstm_crf", "configs", "pyproject.toml")
    return {"commit": git("rev-parse", "HEAD") or None, "package_dirty": bool(dirty)}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> Dict[str, Any]:
    """Cores, threads, CPU model, memory and library versions."""
    import numpy
    import spacy
    import thinc
    import torch

    info: Dict[str, Any] = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "gpu": torch.cuda.is_available(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {
            "torch": torch.__version__,
            "spacy": spacy.__version__,
            "thinc": thinc.__version__,
            "numpy": numpy.__version__,
        },
    }
    try:
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
        info["memory_gb"] = round(mem_kb / 1024 / 1024, 1)
    except (OSError, StopIteration):
        info["memory_gb"] = None
    for name in ("spacy_transformers", "transformers", "seqeval"):
        try:
            module = __import__(name)
            info["versions"][name] = getattr(module, "__version__", "?")
        except ImportError:
            info["versions"][name] = None
    return info


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf8"))


def write_json(path: Path, data: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=False, default=_json_default) + "\n", encoding="utf8")
    return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def transformer_width(path: str) -> int:
    """The hidden size of a local transformer folder."""
    return int(read_json(Path(path) / "config.json")["hidden_size"])

"""Small helpers shared by the benchmark: paths, JSON, timing, memory, logging, number formatting."""

import json
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
# The corpora beside the checkout (``../shared/data``); ``--data`` points elsewhere.
DEFAULT_DATA = REPO.parent / "shared" / "data"
RESULTS = REPO / "bench" / "results"
CELLS = RESULTS / "cells"


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
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals), "values": vals}


def clock() -> float:
    """``time.perf_counter()`` after the GPU (if one is in use) has finished its queued work."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    return time.perf_counter()


def timed_repeats(func: Callable[[], Any], repeats: int, warmup: int = 1) -> List[float]:
    """Wall seconds of ``repeats`` calls of ``func`` after ``warmup`` calls
    (each timed to the end of its GPU work, where it has any)."""
    for _ in range(warmup):
        func()
    times = []
    for _ in range(repeats):
        start = clock()
        func()
        times.append(clock() - start)
    return times


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf8"))


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as JSON, atomically: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=_json_default) + "\n", encoding="utf8")
    os.replace(tmp, path)
    return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def pct(value: Optional[float], digits: int = 2) -> str:
    """A fraction as a percentage with ``digits`` decimals; "–" for a missing value."""
    return "–" if not isinstance(value, (int, float)) else f"{100 * value:.{digits}f}"


def num(value: Optional[float], spec: str = ",.0f") -> str:
    """A number formatted with ``spec``; "–" for a missing value."""
    return "–" if not isinstance(value, (int, float)) else format(value, spec)

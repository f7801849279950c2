"""One measurement in its own process, so that peak RSS is that system's.

python -m bench.worker TASK SPEC.json RESULT.json
"""

import os
import sys
import time
import traceback
from typing import Any, Callable, Dict

from .common import read_json, write_json


def _tasks() -> Dict[str, Callable[[Dict[str, Any]], Dict[str, Any]]]:
    from .crf_bench import run_crf_bench
    from .infer import encoder_only_spacy, infer_spacy
    from .softmax import encoder_only_hf, infer_softmax, train_softmax
    from .throughput import interleaved_throughput
    from .train_spacy import train_spacy

    def both(train: Callable, infer: Callable) -> Callable[[Dict[str, Any]], Dict[str, Any]]:
        # --quick: train and measure in one process (saves a start-up per system).
        return lambda spec: {**train(spec), **infer(spec)}

    return {
        "train_infer_spacy": both(train_spacy, infer_spacy),
        "train_infer_softmax": both(train_softmax, infer_softmax),
        "train_spacy": train_spacy,
        "infer_spacy": infer_spacy,
        "encoder_only_spacy": encoder_only_spacy,
        "train_softmax": train_softmax,
        "infer_softmax": infer_softmax,
        "encoder_only_hf": encoder_only_hf,
        "crf_bench": run_crf_bench,
        "throughput": interleaved_throughput,
    }


def main(argv: list) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    task, spec_path, out_path = argv
    spec = read_json(spec_path)
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    load_before = os.getloadavg()
    start = time.perf_counter()
    try:
        result = _tasks()[task](spec)
    except Exception:
        traceback.print_exc()
        return 1
    result["task"] = task
    result["task_wall_seconds"] = time.perf_counter() - start
    result["loadavg_before"] = list(load_before)
    result["loadavg_after"] = list(os.getloadavg())
    result["torch_threads"] = torch.get_num_threads()
    write_json(out_path, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

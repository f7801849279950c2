"""Run one cell and return (or write) its JSON object.

python -m bench.worker SPEC.json CELL.json     # what ``python -m bench run`` starts per cell
"""

import hashlib
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

from .budgets import corpus_spec
from .common import peak_rss_mb, read_json, write_json
from .docbins import read_meta
from .provenance import bench_hash, device_name, git_commit, loadavg, machine_info, package_hash
from .rules import infer_batch_size
from .specs import MICRO, SPEED, TRAINING_STAGES, CellSpec, setting_rate, setting_scale


def transformer_info(path: Optional[str]) -> Optional[Dict[str, Any]]:
    """The transformer's name, shape and a hash of its weights."""
    if not path:
        return None
    folder = Path(path)
    config = read_json(folder / "config.json")
    info = {k: config.get(k) for k in ("_name_or_path", "model_type", "hidden_size", "num_hidden_layers", "vocab_size")}
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).exists():
            info["weights_sha256"] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
            break
    return info


def _training(spec: CellSpec) -> Dict[str, Any]:
    from .softmax import train_softmax
    from .systems import system
    from .train_spacy import train_spacy

    key = spec.key
    corpus = corpus_spec(key.corpus, spec.quick)
    assert spec.budget is not None
    scale, base_rate = setting_scale(key.setting), setting_rate(key.setting)
    model_dir = Path(spec.model_dir)
    if system(key.corpus, key.system).kind == "softmax":
        assert spec.transformer is not None
        result = train_softmax(
            key.corpus,
            Path(spec.corpus_dir),
            spec.transformer,
            spec.budget,
            key.seed,
            scale,
            model_dir,
            infer_batch_size(corpus.name),
            base_rate,
        )
    else:
        result = train_spacy(
            key.corpus,
            key.system,
            Path(spec.corpus_dir),
            spec.transformer,
            spec.budget,
            key.seed,
            scale,
            model_dir,
            infer_batch_size(corpus.name),
            base_rate,
        )
    meta = read_meta(Path(spec.corpus_dir))
    # One number per test sentence, space-separated: compact in the committed JSON.
    for scores in (result, result.get("constrained")):  # the constrained decoding of softmax has its own
        if scores is not None:
            scores["sentence_counts"] = {k: " ".join(map(str, v)) for k, v in scores["sentence_counts"].items()}
    result["head_lr_scale"] = scale
    result["base_rate"] = base_rate  # None: the configs' own
    result["epochs"] = result["words_seen"] / sum(meta["lengths"]["train"])
    result["test_fingerprint"] = meta["info"]["splits"]["test"]["fingerprint"]
    result["data"] = meta["info"]
    return result


def _speed(spec: CellSpec) -> Dict[str, Any]:
    from .speed import speed_cell

    return speed_cell(spec, corpus_spec(spec.key.corpus, spec.quick))


def _micro(spec: CellSpec) -> Dict[str, Any]:
    from spacy.vocab import Vocab

    from .docbins import load_docs
    from .micro import crf_scaling, encoder_speed
    from .systems import SYSTEMS, encoder_block, encoder_input_width

    if spec.key.system == "crf_scaling":
        if spec.quick:
            return crf_scaling([50, 100, 200, 400], [1, 4], 3)
        return crf_scaling([250, 500, 1000, 2000, 3500, 5000], [1, 4, 8, 16], 5)
    corpus = corpus_spec(spec.key.corpus, spec.quick)
    width = encoder_input_width(corpus.name, spec.transformer)
    blocks = {
        name: encoder_block(corpus.name, s, width)
        for name, s in SYSTEMS[corpus.name].items()
        if s.kind == "crf_ner" and name != "crf"
    }
    lengths: List[int] = []
    for doc in load_docs(Path(spec.corpus_dir) / "test.spacy", Vocab()):
        if sum(lengths) >= (300 if spec.quick else 6000):
            break
        if len(doc):
            lengths.append(len(doc))
    return encoder_speed(blocks, width, lengths, infer_batch_size(corpus.name), 3 if spec.quick else 5)


def run_cell(spec: CellSpec) -> Dict[str, Any]:
    """Run the cell ``spec`` in this process and return its JSON object."""
    import torch

    if spec.threads:
        torch.set_num_threads(int(spec.threads))
    key = spec.key
    device = key.setting if key.stage in (SPEED, MICRO) else "cpu"
    if device == "cuda":
        from thinc.api import require_gpu

        require_gpu()
    before = loadavg()
    start = time.perf_counter()
    if key.stage in TRAINING_STAGES:
        result = _training(spec)
    elif key.stage == SPEED:
        result = _speed(spec)
    elif key.stage == MICRO:
        result = _micro(spec)
    else:
        raise ValueError(f"unknown stage {key.stage!r}")
    cell: Dict[str, Any] = {
        "cell_id": key.cell_id,
        "corpus": key.corpus,
        "stage": key.stage,
        "system": key.system,
        "setting": key.setting,
        "seed": key.seed,
        "device": device,
        "device_name": device_name(device),
        "quick": spec.quick,
        **result,
        "package_hash": package_hash(),
        "bench_hash": bench_hash(),
        **git_commit(),
        "machine": machine_info(),
        "torch_threads": torch.get_num_threads(),
        "transformer": transformer_info(spec.transformer),
        "loadavg_before": before,
        "loadavg_after": loadavg(),
        "cell_seconds": time.perf_counter() - start,
        "peak_rss_mb": peak_rss_mb(),
    }
    return cell


def main(argv: list) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    spec = CellSpec.from_json(read_json(Path(argv[0])))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        cell = run_cell(spec)
    except Exception:
        traceback.print_exc()
        return 1
    write_json(Path(argv[1]), cell)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

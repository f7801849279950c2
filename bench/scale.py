"""How `spacy-bilstm-crf annotate` scales (issue 11): docs/s and entities/s of
the MSRA CPU pipeline over N documents with the local engine in 1 and 2
processes and the Ray engine with 1 and 2 workers, the scaling efficiency of
each engine and Ray's overhead against the local engine.

    python -m bench.scale                      # 50,000 docs; trains a small MSRA pipeline if no --model
    python -m bench.scale --docs 2000 --label "validation run"
    python -m bench.scale --model training/model-best --docs 50000

Each configuration runs the annotate command in a fresh process over the same
JSONL file (MSRA sentences, one per document, repeated if N is larger than
the corpus); the Ray runs join a local cluster that this script starts once
with all the machine's CPUs. Every run must produce the same records. The
JSON goes to bench/results/scale-<date>-<commit>.json.

It needs the package with the ``ray`` extra, and the MSRA corpus in
../shared/data/msra (or --corpus) when it trains its own pipeline; of bench/
only provenance.py (the machine and the commit).
"""

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from .common import DEFAULT_DATA, REPO
from .provenance import PACKAGE_PATHS, has_changes, head_commit, host_info, library_versions, loadavg

CONFIG = REPO / "configs" / "zh" / "cnn_bilstm_crf.cfg"
CONFIGURATIONS = {
    "local-1": ["--n-process", "1"],
    "local-2": ["--n-process", "2"],
    "ray-1": ["--engine", "ray", "--workers", "1"],
    "ray-2": ["--engine", "ray", "--workers", "2"],
}


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="pipeline folder (default: train one)")
    parser.add_argument("--docs", type=int, default=50_000, help="documents to annotate (default 50,000)")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_DATA / "msra")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "spacy-bilstm-crf-scale")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--train-steps", type=int, default=300, help="steps when training the pipeline here")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--shard-size", type=int, default=10_000)
    parser.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS of every run (default 1: one core per process or worker)",
    )
    parser.add_argument("--configs", default=",".join(CONFIGURATIONS), help="comma-separated subset to run")
    parser.add_argument("--label", default="", help="what this run is, stored in the JSON")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per configuration")
    return parser.parse_args(argv)


def msra_sentences(corpus: Path) -> Iterator[str]:
    """The sentences of MSRA train.txt then test.txt, characters joined."""
    for name in ("train.txt", "test.txt"):
        characters: List[str] = []
        with (corpus / name).open(encoding="utf8") as file:
            for line in file:
                if line.strip():
                    characters.append(line.split()[0])
                elif characters:
                    yield "".join(characters)
                    characters = []
        if characters:
            yield "".join(characters)


def write_docs(path: Path, corpus: Path, n_docs: int) -> Dict[str, Any]:
    """N documents as JSONL ({"id", "text"}), MSRA sentences in a cycle."""
    sentences = list(msra_sentences(corpus))
    characters = 0
    with path.open("w", encoding="utf8") as file:
        for number in range(n_docs):
            text = sentences[number % len(sentences)]
            characters += len(text)
            file.write(json.dumps({"id": number, "text": text}, ensure_ascii=False) + "\n")
    return {"docs": n_docs, "characters": characters, "distinct_sentences": min(n_docs, len(sentences))}


def train_model(work: Path, corpus: Path, steps: int) -> Path:
    """A small MSRA pipeline: configs/zh/cnn_bilstm_crf.cfg for ``steps`` steps
    (kept in ``work`` and reused by later runs)."""
    model = work / f"training-{steps}" / "model-last"
    if model.exists():
        return model
    unfinished = work / f"training-{steps}.unfinished"
    shutil.rmtree(unfinished, ignore_errors=True)
    data = work / "corpus"
    # --lenient as in project.yml: MSRA has entity tails cut by sentence splits.
    convert = ["convert", str(corpus / "train.txt"), str(data), "--dev-fraction", "0.02", "--lenient"]
    run([sys.executable, "-m", "spacy_bilstm_crf", *convert])
    run(
        [
            sys.executable, "-m", "spacy", "train", str(CONFIG), "--output", str(unfinished),
            "--paths.train", str(data / "train.spacy"), "--paths.dev", str(data / "dev.spacy"),
            "--training.max_steps", str(steps), "--training.eval_frequency", str(steps),
        ]
    )  # fmt: skip
    unfinished.rename(model.parent)
    return model


def run(command: List[str], **kwargs: Any) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return result


@contextmanager
def ray_cluster(wanted: bool) -> Iterator[Optional[str]]:
    """A local Ray cluster with every CPU, or None if not ``wanted``; its
    address. A fresh token, set before ray is imported, lets the annotate
    processes join it. Stopped, and its temporary folder removed, at the end."""
    if not wanted:
        yield None
        return
    # A local cluster on loopback addresses only (with this variable at 0, Ray takes
    # 127.0.0.1 as the node address); the annotate processes inherit both settings.
    os.environ.update(
        {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    )
    import ray

    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # short: Ray's socket paths must fit
    try:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False, _temp_dir=temp_dir)
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def annotate_run(
    name: str,
    model: Path,
    docs: Path,
    characters: int,
    work: Path,
    args: argparse.Namespace,
    ray_address: Optional[str],
) -> Dict[str, Any]:
    """One configuration in a fresh process; its figures from the summary."""
    output = work / "outputs" / f"{name}.jsonl"
    shutil.rmtree(output, ignore_errors=True)
    command = [
        sys.executable, "-m", "spacy_bilstm_crf", "annotate", str(model), str(docs), str(output),
        "--batch-size", str(args.batch_size), "--shard-size", str(args.shard_size), "--log-every", "60",
        *CONFIGURATIONS[name],
    ]  # fmt: skip
    if ray_address and name.startswith("ray"):
        command += ["--address", ray_address]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.torch_threads)}
    load_before = loadavg()
    started = time.monotonic()
    run(command, env=env, timeout=args.timeout)
    process_s = time.monotonic() - started
    summary = json.loads((output / "_summary.json").read_text(encoding="utf8"))
    entities = sum(summary["entities"].values())
    figures = {
        "name": name,
        "command": " ".join(command[1:]),
        "docs": summary["docs_in"],
        "annotated": summary["annotated"],
        "entities": entities,
        "wall_s": summary["wall_s"],
        "process_wall_s": round(process_s, 3),
        "docs_per_s": round(summary["docs_in"] / summary["wall_s"], 2),
        "characters_per_s": round(characters / summary["wall_s"], 1),
        "entities_per_s": round(entities / summary["wall_s"], 2),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
    }
    print(
        f"{name:8} {figures['docs_per_s']:9,.1f} docs/s {figures['entities_per_s']:9,.1f} entities/s "
        f"wall {summary['wall_s']:7.1f} s  load {figures['loadavg_before'][0]:.1f}",
        flush=True,
    )
    return figures


def records(folder: Path) -> List[Dict[str, Any]]:
    found = [json.loads(line) for part in sorted(folder.glob("part-*")) for line in part.open(encoding="utf8")]
    return sorted(found, key=lambda record: record["id"])


def derived(runs: Dict[str, Dict[str, Any]]) -> Dict[str, Optional[float]]:
    """Scaling efficiency (2 processes or workers against twice one) and Ray's
    overhead (1 - Ray docs/s / local docs/s at the same parallelism)."""

    def rate(name: str) -> Optional[float]:
        return runs[name]["docs_per_s"] if name in runs else None

    def ratio(a: Optional[float], b: Optional[float], scale: float = 1.0) -> Optional[float]:
        return round(a / (scale * b), 3) if a is not None and b else None

    def overhead(ray: str, local: str) -> Optional[float]:
        share = ratio(rate(ray), rate(local))
        return None if share is None else round(1 - share, 3)

    return {
        "local_scaling_efficiency": ratio(rate("local-2"), rate("local-1"), 2),
        "ray_scaling_efficiency": ratio(rate("ray-2"), rate("ray-1"), 2),
        "ray_overhead_1": overhead("ray-1", "local-1"),
        "ray_overhead_2": overhead("ray-2", "local-2"),
    }


def model_description(model: Path, trained_here: bool, steps: int) -> Dict[str, Any]:
    meta = json.loads((model / "meta.json").read_text(encoding="utf8"))
    return {
        "path": str(model),
        "trained_here": trained_here,
        "train_steps": steps if trained_here else None,
        "dev_ents_f": meta.get("performance", {}).get("ents_f"),
        "pipeline": meta.get("pipeline"),
    }


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    names = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = sorted(set(names) - set(CONFIGURATIONS))
    if unknown:
        raise SystemExit(f"unknown configurations: {', '.join(unknown)}")
    args.work.mkdir(parents=True, exist_ok=True)
    started = datetime.now(timezone.utc)
    load_at_start = loadavg()
    trained_here = args.model is None
    model = args.model.resolve() if args.model else train_model(args.work, args.corpus, args.train_steps)
    docs = args.work / f"docs-{args.docs}.jsonl"
    corpus = write_docs(docs, args.corpus, args.docs)
    with ray_cluster(any(name.startswith("ray") for name in names)) as address:
        runs = {name: annotate_run(name, model, docs, corpus["characters"], args.work, args, address) for name in names}
        ray_cpus = os.cpu_count() if address else None
    reference = records(args.work / "outputs" / f"{names[0]}.jsonl")
    same = all(records(args.work / "outputs" / f"{name}.jsonl") == reference for name in names[1:])
    if not same:
        raise SystemExit("the configurations produced different records")
    commit = head_commit() or "unknown"
    result = {
        "schema": "scale/2",
        "label": args.label or ("full run" if args.docs >= 50_000 else f"validation run (N={args.docs:,})"),
        "date": started.isoformat(timespec="seconds"),
        "commit": commit,
        "uncommitted_changes": has_changes((*PACKAGE_PATHS, "bench/scale.py")),
        "machine": {**host_info(), "loadavg_at_start": load_at_start, "loadavg_at_end": loadavg()},
        "versions": library_versions(("spacy-bilstm-crf", "spacy", "torch", "ray", "pyarrow")),
        "model": model_description(model, trained_here, args.train_steps),
        "corpus": corpus,
        "settings": {
            "batch_size": args.batch_size,
            "shard_size": args.shard_size,
            "torch_threads": args.torch_threads,
            "ray_cluster_cpus": ray_cpus,
        },
        "runs": list(runs.values()),
        "same_records_everywhere": same,
        "derived": derived(runs),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"scale-{started:%Y%m%d-%H%M%S}-{commit[:8]}.json"
    path.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf8")
    print(json.dumps(result["derived"], indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

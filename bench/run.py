"""Run every benchmark of issue 4 and write one results JSON.

    python bench/run.py                 # the full run (~40 min on 2 quiet CPU cores)
    python bench/run.py --quick         # smoke run: tiny data, tiny random BERT, ~1.5 minutes
    python bench/run.py --quick --out DIR

Each system trains in its own process and is measured in another, one at a
time; see bench/README.md for what is measured and the budgets.
"""

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    DEFAULT_DATA,
    GET_MINILM,
    REPO,
    git_commit,
    log,
    machine_info,
    ratio,
    read_json,
    transformer_width,
    write_json,
)
from bench.data import Limits, load_docs, prepare_corpus  # noqa: E402
from bench.schema import SCHEMA_VERSION, validate  # noqa: E402
from bench.systems import CEILING, SYSTEMS, TITLES, TRAINED, optimizer_settings  # noqa: E402
from bench.targets import check_targets  # noqa: E402

# Budgets and sizes. The full run is sized to finish in about an hour on 2
# CPU cores; every system of a corpus sees the same words in the same batches.
FULL: Dict[str, Any] = {
    "corpora": {
        "conll2003": {
            "budget_words": 60_000,  # ~0.3 epoch of train, 506 steps
            "limits": {"train": None, "dev": 500, "test": None},
            "throughput_words": 4_000,
        },
        "msra": {
            "budget_words": 1_000_000,  # characters, ~0.47 epoch of train
            "limits": {"train": None, "dev": 500, "test": None, "dev_fraction": 0.02},
            "throughput_words": 30_000,
        },
    },
    "checkpoint_fractions": [0.125, 0.25, 0.5, 0.75, 1.0],
    "warmup_steps": None,  # the configs' (250)
    "throughput_rounds": 5,
    "latency_repeats": 30,
    "crf": {"lengths": [250, 500, 1000, 2000, 3500, 5000], "label_counts": [1, 4, 8, 16], "repeats": 5},
    "heads": {"max_words": 6000},
    "separate_processes": True,  # training and inference each in a fresh process
}
QUICK: Dict[str, Any] = {
    "corpora": {
        "conll2003": {
            "budget_words": 400,
            "limits": {"train": 200, "dev": 20, "test": 40, "max_lines": 6000},
            "throughput_words": 200,
        },
        "msra": {
            "budget_words": 1_500,
            "limits": {"train": 200, "dev": 20, "test": 40, "dev_fraction": 0.1, "max_lines": 12000},
            "throughput_words": 400,
        },
    },
    "checkpoint_fractions": [0.34, 0.67, 1.0],
    "warmup_steps": 2,
    "throughput_rounds": 3,
    "latency_repeats": 5,
    "crf": {"lengths": [50, 100, 200, 400], "label_counts": [1, 4], "repeats": 3},
    "heads": {"max_words": 300},
    "separate_processes": False,  # one process per system: train, then load and measure
}


def parse_args(argv: List[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny subsets, tiny random BERT")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="folder for the results JSON")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with conll2003/ and msra/")
    parser.add_argument("--transformer", help="local BERT folder (default: MiniLM from get-minilm; --quick: tiny)")
    parser.add_argument("--work", type=Path, help="folder for corpora and models (default: a temp folder)")
    parser.add_argument("--keep-work", action="store_true", help="keep the work folder")
    parser.add_argument("--corpora", default="conll2003,msra", help="comma-separated subset of conll2003,msra")
    parser.add_argument("--systems", help="comma-separated subset of systems (default: all)")
    parser.add_argument("--budget-conll", type=int, help="training words for CoNLL (default: see FULL)")
    parser.add_argument("--budget-msra", type=int, help="training characters for MSRA (default: see FULL)")
    parser.add_argument("--dev-sentences", type=int, help="cap on dev sentences (learning curve), every corpus")
    parser.add_argument("--test-sentences", type=int, help="cap on test sentences, every corpus (partial runs)")
    parser.add_argument("--threads", type=int, help="torch threads per process (default: torch's, all cores)")
    parser.add_argument("--skip-micro", action="store_true", help="skip the CRF-alone and heads-alone timings")
    return parser.parse_args(argv)


def settings_for(args: argparse.Namespace) -> Dict[str, Any]:
    import copy

    settings = copy.deepcopy(QUICK if args.quick else FULL)
    if args.budget_conll:
        settings["corpora"]["conll2003"]["budget_words"] = args.budget_conll
    if args.budget_msra:
        settings["corpora"]["msra"]["budget_words"] = args.budget_msra
    wanted = [c.strip() for c in args.corpora.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in SYSTEMS]
    if unknown:
        raise SystemExit(f"unknown corpora {unknown}: choose from {list(SYSTEMS)}")
    settings["corpora"] = {c: settings["corpora"][c] for c in wanted}
    for entry in settings["corpora"].values():
        if args.dev_sentences:
            entry["limits"]["dev"] = args.dev_sentences
        if args.test_sentences:
            entry["limits"]["test"] = args.test_sentences
    only = {s.strip() for s in args.systems.split(",")} if args.systems else None
    for corpus, entry in settings["corpora"].items():
        entry["systems"] = [s for s in SYSTEMS[corpus] if only is None or s in only]
    # --quick: one thread, so that a busy CI machine cannot stall torch's thread pool.
    settings["threads"] = args.threads or (1 if args.quick else None)
    return settings


def get_transformer(args: argparse.Namespace, work: Path, corpus_dirs: Dict[str, Path]) -> Optional[str]:
    if args.transformer:
        return str(Path(args.transformer).resolve())
    if "conll2003" not in corpus_dirs:
        return None
    if args.quick:
        import spacy

        vocab = spacy.blank("en").vocab
        words = {
            t.text
            for split in ("train", "dev", "test")
            for d in load_docs(corpus_dirs["conll2003"] / f"{split}.spacy", vocab)
            for t in d
        }
        from spacy_bilstm_crf.testing import build_tiny_bert

        return str(build_tiny_bert(work / "tiny-bert", words))
    dest = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "minilm-l6"
    out = subprocess.run([str(GET_MINILM), str(dest)], check=True, capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


class Runner:
    """Runs worker tasks one at a time, each in a fresh Python process."""

    def __init__(self, work: Path, threads: Optional[int]) -> None:
        self.work = work
        self.threads = threads
        self.count = 0

    def __call__(self, task: str, spec: Dict[str, Any]) -> Dict[str, Any]:
        self.count += 1
        spec = dict(spec, threads=self.threads)
        stem = self.work / "tasks" / f"{self.count:02d}-{task}-{spec.get('corpus', 'all')}-{spec.get('system', '')}"
        spec_path = write_json(stem.with_suffix(".spec.json"), spec)
        out_path = stem.with_suffix(".result.json")
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "bench.worker", task, str(spec_path), str(out_path)], cwd=REPO, env=env
        )
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"{task} for {spec.get('corpus')}/{spec.get('system')} failed (exit {proc.returncode})")
        log(f"{task} {spec.get('corpus', '')}/{spec.get('system', '')}: {time.perf_counter() - start:.0f}s")
        return read_json(out_path)


def run_system(runner: Runner, corpus: str, system: str, base: Dict[str, Any]) -> Dict[str, Any]:
    spec = dict(base, system=system, model_dir=str(Path(base["work"]) / "models" / corpus / system))
    if system in TRAINED:
        kind = "softmax" if system == "softmax" else "spacy"
        if base["separate_processes"]:
            train = runner(f"train_{kind}", spec)
            infer = runner(f"infer_{kind}", spec)
        else:
            train = infer = runner(f"train_infer_{kind}", spec)
        entry = {**train, **infer}
        entry["peak_rss_mb"] = max(train["peak_rss_train_mb"], infer["peak_rss_infer_mb"])
        entry["loadavg"] = {"train": train["loadavg_before"], "infer": infer["loadavg_before"]}
    else:
        task = "encoder_only_hf" if system == "hf_encoder_only" else "encoder_only_spacy"
        entry = runner(task, spec)
        entry.update(
            {key: None for key in ("f1", "precision", "recall", "train_words_per_s", "train_seconds", "words_seen")}
        )
        entry["peak_rss_mb"] = entry["peak_rss_infer_mb"]
        entry["loadavg"] = {"infer": entry["loadavg_before"]}
    for key in ("task", "task_wall_seconds", "loadavg_before", "loadavg_after"):
        entry.pop(key, None)
    entry["title"] = TITLES[(corpus, system)]
    return entry


KINDS = {"softmax": "softmax", "hf_encoder_only": "encoder_hf"}
# Besides the encoder alone saved and loaded like the systems, the throughput
# run times it as initialized from the pretrained weights (CoNLL): a check
# that loading from disk (spacy-transformers builds the model with
# ``from_config``: eager attention instead of sdpa) costs no speed.
FRESH = "encoder_only_fresh"


def measure_throughput(runner: Runner, systems: Dict[str, Dict[str, Any]], base: Dict[str, Any], rounds: int) -> None:
    """Interleaved words/s of every system that ran (see bench/throughput.py)."""
    entries: Dict[str, Dict[str, Any]] = {
        name: {
            "kind": KINDS.get(name, "spacy"),
            "model_dir": str(Path(base["work"]) / "models" / base["corpus"] / name),
        }
        for name, entry in systems.items()
        if not entry.get("error")
    }
    if not entries:
        return
    if "encoder_only" in entries and base.get("transformer") and base["corpus"] == "conll2003":
        entries[FRESH] = {"kind": "encoder_spacy", "model_dir": None}
    result = runner("throughput", dict(base, systems=entries, rounds=rounds))
    for name, figures in result["systems"].items():
        if name == FRESH:
            systems["encoder_only"]["fresh_init"] = {
                "infer_words_per_s": figures["infer_words_per_s"],
                "infer_words_per_s_spread": figures["infer_words_per_s_spread"],
                "loaded_over_fresh_per_round": _inverse(figures["infer_over_encoder_spread"]),
            }
            continue
        systems[name].update(figures)
        systems[name]["infer_over_encoder_per_round"] = figures["infer_over_encoder_spread"]
        systems[name]["throughput_interleaved"] = {k: result[k] for k in ("words", "docs", "rounds", "batch_size")}


def _inverse(stats: Dict[str, Any]) -> Dict[str, Any]:
    values = [1.0 / v for v in stats.get("values", []) if v]
    return {"median": statistics.median(values) if values else None, "values": values}


def add_ratios(systems: Dict[str, Dict[str, Any]]) -> None:
    """Each system's ceiling (its encoder alone), and its words/s over the ceiling's:
    the median of the per-round ratios of the interleaved measurement, and the
    in-pipeline estimate (the share of inference time spent in the encoder)."""
    for name, entry in systems.items():
        if entry.get("error"):
            continue
        if "infer_words_per_s" not in entry:  # the interleaved measurement failed
            entry["infer_words_per_s"] = entry.get("process_words_per_s")
        ceiling_name = name if name.endswith("encoder_only") else CEILING.get(name, "encoder_only")
        ceiling = systems.get(ceiling_name, {})
        entry["encoder_only_system"] = ceiling_name
        entry["encoder_only_words_per_s"] = ceiling.get("infer_words_per_s") or ceiling.get("process_words_per_s")
        per_round = (entry.get("infer_over_encoder_per_round") or {}).get("median")
        entry["infer_over_encoder"] = (
            per_round if per_round is not None else ratio(entry["infer_words_per_s"], entry["encoder_only_words_per_s"])
        )
        shares = entry.get("infer_time_shares") or {}
        encoder_share = shares.get("transformer", shares.get("tok2vec"))
        if encoder_share is not None and not name.endswith("encoder_only"):
            entry["infer_over_encoder_in_pipeline"] = encoder_share


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    settings = settings_for(args)
    mode = "quick" if args.quick else "full"
    started = time.perf_counter()
    date = datetime.datetime.now(datetime.timezone.utc)
    work = args.work or Path(tempfile.mkdtemp(prefix=f"bench-{mode}-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"{mode} run; work folder {work}")
    results: Dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "mode": mode,
        **git_commit(),
        "date": date.isoformat(timespec="seconds"),
        "machine": machine_info(),
        "loadavg_at_start": list(os.getloadavg()),
        "settings": settings,
        "corpora": {},
    }
    if settings["threads"]:
        results["machine"]["torch_threads"] = settings["threads"]
    runner = Runner(work, settings["threads"])
    failures: List[str] = []
    try:
        corpus_dirs: Dict[str, Path] = {}
        for corpus, cfg in settings["corpora"].items():
            limits = Limits(seed=0, **cfg["limits"])
            corpus_dirs[corpus] = work / "corpora" / corpus
            info = prepare_corpus(corpus, args.data, corpus_dirs[corpus], limits, allow_tiny=args.quick)
            log(
                f"{corpus}: "
                + ", ".join(f"{k} {v['sentences']:,} sents / {v['words']:,} words" for k, v in info["splits"].items())
            )
            results["corpora"][corpus] = {"data": info, "optimizer": optimizer_settings(corpus), "systems": {}}
        transformer = get_transformer(args, work, corpus_dirs)
        results["transformer"] = transformer
        if transformer:
            config = read_json(Path(transformer) / "config.json")
            keys = ("_name_or_path", "model_type", "hidden_size", "num_hidden_layers", "vocab_size")
            results["transformer_config"] = {key: config.get(key) for key in keys}
        for corpus, cfg in settings["corpora"].items():
            base = {
                "corpus": corpus,
                "corpus_dir": str(corpus_dirs[corpus]),
                "work": str(work),
                "transformer": transformer,
                "budget_words": cfg["budget_words"],
                "checkpoint_fractions": settings["checkpoint_fractions"],
                "warmup_steps": settings["warmup_steps"],
                "throughput_words": cfg["throughput_words"],
                "latency_repeats": settings["latency_repeats"],
                "batch_size": 64 if corpus == "conll2003" else 256,
                "seed": 0,
                "separate_processes": settings["separate_processes"],
            }
            systems = results["corpora"][corpus]["systems"]
            for system in cfg["systems"]:
                log(f"== {corpus} / {system}: {TITLES[(corpus, system)]}")
                try:
                    systems[system] = run_system(runner, corpus, system, base)
                except Exception as exc:  # keep going: one failure should not lose the rest
                    failures.append(f"{corpus}/{system}: {exc}")
                    systems[system] = {"error": str(exc), "title": TITLES[(corpus, system)]}
                    log(f"FAILED {corpus}/{system}: {exc}")
            try:
                measure_throughput(runner, systems, base, settings["throughput_rounds"])
            except Exception as exc:
                failures.append(f"{corpus}/throughput: {exc}")
                log(f"FAILED {corpus}/throughput: {exc}")
            add_ratios(systems)
        results["crf_bench"] = {}
        if not args.skip_micro:
            heads = {
                corpus: {
                    "test_path": str(corpus_dirs[corpus] / "test.spacy"),
                    "width": transformer_width(transformer) if corpus == "conll2003" and transformer else 96,
                    "batch_size": 64 if corpus == "conll2003" else 256,
                    "max_words": settings["heads"]["max_words"],
                }
                for corpus in settings["corpora"]
            }
            spec = {**settings["crf"], "heads": heads}
            try:
                results["crf_bench"] = runner("crf_bench", spec)
            except Exception as exc:
                failures.append(f"crf_bench: {exc}")
                results["crf_bench"] = {"error": str(exc)}
    finally:
        results["duration_seconds"] = time.perf_counter() - started
        results["loadavg_at_end"] = list(os.getloadavg())
        results["failures"] = failures
        results["targets"] = check_targets(results)
        stamp = date.strftime("%Y%m%d-%H%M%S")
        commit = (results.get("commit") or "nocommit")[:8]
        out_path = write_json(args.out / f"{mode}-{stamp}-{commit}.json", results)
        log(f"wrote {out_path} ({results['duration_seconds']:.0f}s)")
        if not args.keep_work and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print_summary(results)
    expected = {c: cfg["systems"] for c, cfg in settings["corpora"].items()}
    validate(results, expected, TRAINED, micro=not args.skip_micro, ceilings=CEILING)
    if args.quick:
        from bench.report import render

        md = render(results, out_path, args.out / f"{mode}-{stamp}-report.md", args.out / f"{mode}-{stamp}-img")
        log(f"report check: wrote {md}")
    if failures:
        log("failures:\n  " + "\n  ".join(failures))
        return 1
    return 0


def print_summary(results: Dict[str, Any]) -> None:
    for corpus, entry in results.get("corpora", {}).items():
        print(f"\n{corpus}")
        print(f"  {'system':18} {'F1':>7} {'train w/s':>10} {'infer w/s':>10} {'/enc':>6} {'RSS MB':>7}")
        for name, s in entry["systems"].items():
            if "error" in s:
                print(f"  {name:18} FAILED: {s['error']}")
                continue
            print(
                f"  {name:18} {_fmt(s.get('f1'), '.4f'):>7} {_fmt(s.get('train_words_per_s'), '.0f'):>10} "
                f"{_fmt(s.get('infer_words_per_s'), '.0f'):>10} {_fmt(s.get('infer_over_encoder'), '.2f'):>6} "
                f"{_fmt(s.get('peak_rss_mb'), '.0f'):>7}"
            )
    print("\ntargets")
    for t in results.get("targets", []):
        met = {True: "met", False: "NOT met", None: "n/a"}[t["met"]]
        print(f"  {met:8} {t['name']}: {_fmt(t['value'], '.4f')} (goal {t['goal']})")


def _fmt(value: Any, spec: str) -> str:
    return "-" if not isinstance(value, (int, float)) else format(value, spec)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The torch-free runtime against torch and spaCy's ``ner`` (issue 26).

``python -m bench onnx --model PIPELINE --corpus CORPUS --out bench/results/onnx-msra.json``

``--model`` is a trained torch pipeline with ``crf_ner`` (the README's main
job: ``training/msra/cnn_bilstm_crf/model-best``) and ``--corpus`` the folder
of its ``train.spacy``, ``dev.spacy`` and ``test.spacy``. The run:

1. exports the pipeline twice, float and int8 (``spacy-bilstm-crf export``);
2. trains spaCy's ``ner`` on the same features (the benchmark's ``spacy_ner``
   system of this corpus) for ``--ner-steps`` steps on a sample of train:
   enough to time it, which is all it is for (its accuracy is not reported);
3. scores torch, float and int8 on the test set: P/R/F, and the test
   sentences whose entities differ from torch's;
4. times inference over the first ``--sentences`` test sentences, all four
   pipelines in one process on the package's thread plan, in ``--rounds``
   interleaved rounds whose order rotates; per round characters/s and the
   ratios to torch and to ``ner``;
   Before each timed pass the character features' cache of jieba
   segmentations is cleared, so that every pass segments its sentences as
   it would new text;
5. in fresh venvs (the package alone, with ``[torch]``, with ``[onnx]``):
   site-packages MB, the seconds to import the runtime (``import torch`` /
   ``import onnxruntime``) and to import spaCy and load the pipeline (torch
   pipeline / float export), and the peak memory of loading and annotating
   the timed sentences; ``--skip-venvs`` leaves this out;
6. profiles where inference time goes in the torch pipeline and both
   exports: microseconds per character in the tok2vec, in the scorer, in
   Viterbi decoding and in the rest, one pass over the timed sentences each
   (``bench.timing``), and the ratio to torch an export would reach were its
   scorer to take no time. For the torch pipeline the tok2vec is all of it
   and the scorer the encoder and emission layer; for an export the tok2vec
   is the part left in Thinc (features, embedding tables) and the scorer
   the ONNX graph (the tok2vec's dense tail, encoder, emission layer).

Each stage's results are written to ``--out`` as they finish. ``--only
STAGE`` runs the exports and that one stage and adds it to an existing
``--out``, keeping the others.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any, Dict, List, Sequence, cast

from spacy_bilstm_crf.models.char_embed import clear_segment_cache

from .common import REPO, log, read_json, spread, write_json
from .provenance import git_commit, machine_info, package_hash
from .speed import rotated
from .timing import infer_breakdown, timed_refs

SYSTEMS = ("torch", "onnx_float", "onnx_int8", "spacy_ner")

LOAD_SCRIPT = """
import json, sys, time
start = time.perf_counter()
import spacy
nlp = spacy.load(sys.argv[1])
loaded = time.perf_counter() - start
texts = json.load(open(sys.argv[2], encoding="utf8"))
list(nlp.pipe(texts))
# VmHWM, this process's own peak (ru_maxrss would carry the parent's over exec)
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
peak = int(status[0]) / 1024.0
print(json.dumps({"load_seconds": loaded, "peak_rss_mb": peak}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="a trained torch pipeline folder with crf_ner")
    parser.add_argument("--corpus", type=Path, required=True, help="folder with train/dev/test.spacy of MSRA")
    parser.add_argument("--sentences", type=int, default=2000, help="test sentences timed per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ner-steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each import and load timing")
    parser.add_argument("--skip-venvs", action="store_true", help="leave out install size, import time and memory")
    parser.add_argument("--only", choices=("accuracy", "speed", "install", "profile"), help="run one stage")
    parser.add_argument("--out", type=Path, required=True)


def onnx_benchmark(args: argparse.Namespace) -> int:
    provenance = {"package_hash": package_hash(), **git_commit(), "machine": machine_info()}
    result: Dict[str, Any] = {
        "what": "the exported (ONNX) runtime against the torch pipeline and spaCy ner (issue 26)",
        "model": str(args.model),
        **provenance,
    }
    if args.only:
        result = read_json(args.out)
        result.setdefault("stage_provenance", {})[args.only] = provenance
    every = ["accuracy", "speed"] + ([] if args.skip_venvs else ["install"]) + ["profile"]
    stages = [args.only] if args.only else every
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        work = Path(tmp)
        paths = {"torch": args.model, "onnx_float": work / "onnx-float", "onnx_int8": work / "onnx-int8"}
        export_seconds = {}
        for name, flags in (("onnx_float", []), ("onnx_int8", ["--int8"])):
            start = time.perf_counter()
            command = [sys.executable, "-m", "spacy_bilstm_crf", "export", str(args.model), str(paths[name]), *flags]
            subprocess.run(command, check=True)
            export_seconds[name] = time.perf_counter() - start
        if not args.only:
            result["export_seconds"] = export_seconds
            write_json(args.out, result)
        texts, gold = test_set(args.corpus)
        timed = texts[: args.sentences]
        if "accuracy" in stages:
            result["accuracy"] = accuracy(paths, gold)
            write_json(args.out, result)
        if "speed" in stages:
            paths["spacy_ner"] = train_ner(args.corpus, work / "ner", args.ner_steps)
            result["ner_steps"] = args.ner_steps
            result["speed"] = speed(paths, timed, args.rounds)
            result["speed"]["characters"] = sum(len(text) for text in timed)
            write_json(args.out, result)
        if "install" in stages:
            result["install"] = installs(paths, timed, work, args.repeats)
            write_json(args.out, result)
        if "profile" in stages:
            result["profile"] = profile(paths, gold[: args.sentences])
            write_json(args.out, result)
    return 0


def profile(paths: Dict[str, Path], docs: Sequence[Any]) -> Dict[str, Any]:
    """Microseconds per character of the tok2vec, the scorer, Viterbi and the rest, per crf_ner pipeline."""
    import spacy

    from spacy_bilstm_crf.threads import configure_threads

    characters = sum(len(doc.text) for doc in docs)
    out: Dict[str, Any] = {"sentences": len(docs), "characters": characters}
    for name in ("torch", "onnx_float", "onnx_int8"):
        nlp = spacy.load(paths[name])
        configure_threads(nlp)
        infer_breakdown(nlp, docs[:200], 64)  # warm-up
        model = cast(Any, nlp.get_pipe("crf_ner")).model
        clear_segment_cache()
        with timed_refs(model, ("tok2vec",)) as timers:
            seconds = infer_breakdown(nlp, docs, 64)
        total = sum(value for key, value in seconds.items() if "." not in key)
        tok2vec = timers["tok2vec"].forward
        parts = {
            "tok2vec": tok2vec,
            "scorer": seconds["crf_ner.emissions"] - tok2vec,
            "viterbi": seconds["crf_ner.viterbi"],
        }
        parts["rest"] = total - sum(parts.values())
        out[name] = {"us_per_char": {key: 1e6 * value / characters for key, value in parts.items()}}
        out[name]["us_per_char"]["total"] = 1e6 * total / characters
    for name in ("onnx_float", "onnx_int8"):
        us = out[name]["us_per_char"]
        out[name]["over_torch"] = out["torch"]["us_per_char"]["total"] / us["total"]
        out[name]["over_torch_with_a_free_scorer"] = out["torch"]["us_per_char"]["total"] / (us["total"] - us["scorer"])
    return out


def train_ner(corpus: Path, output: Path, steps: int) -> Path:
    """spaCy ``ner`` on the features of the benchmark's MSRA ``spacy_ner`` system, ``steps`` steps."""
    from .systems import build_config

    config = build_config("msra", "spacy_ner", corpus, None, total_steps=steps, warmup_steps=None, head_lr_scale=1.0)
    config_path = output.parent / "ner.cfg"
    output.parent.mkdir(parents=True, exist_ok=True)
    config.to_disk(config_path)
    command = [sys.executable, "-m", "spacy", "train", str(config_path), "--output", str(output)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return output / "model-last"


def test_set(corpus: Path) -> tuple:
    """The test sentences' texts and their gold docs."""
    import spacy
    from spacy.tokens import DocBin

    vocab = spacy.blank("zh").vocab
    gold = list(DocBin().from_disk(corpus / "test.spacy").get_docs(vocab))
    return [doc.text for doc in gold], gold


def accuracy(paths: Dict[str, Path], gold: Sequence[Any]) -> Dict[str, Any]:
    """Entity P/R/F on the test set of each crf_ner pipeline, and the docs whose entities differ from torch's."""
    import spacy
    from spacy.scorer import get_ner_prf
    from spacy.tokens import Doc
    from spacy.training import Example

    found: Dict[str, Any] = {}
    predicted_ents: Dict[str, List[Any]] = {}
    for name in ("torch", "onnx_float", "onnx_int8"):
        nlp = spacy.load(paths[name])
        words = [Doc(nlp.vocab, words=[t.text for t in doc], spaces=[bool(t.whitespace_) for t in doc]) for doc in gold]
        examples = [Example(predicted, doc) for predicted, doc in zip(nlp.pipe(words), gold)]
        scores = get_ner_prf(examples)
        predicted_ents[name] = [[(e.start, e.end, e.label_) for e in eg.predicted.ents] for eg in examples]
        found[name] = {key: scores[key] for key in ("ents_p", "ents_r", "ents_f")}
    for name in ("onnx_float", "onnx_int8"):
        found[name]["docs_differing_from_torch"] = sum(
            a != b for a, b in zip(predicted_ents["torch"], predicted_ents[name])
        )
        found[name]["f1_minus_torch"] = found[name]["ents_f"] - found["torch"]["ents_f"]
    found["test_docs"] = len(gold)
    return found


def speed(paths: Dict[str, Path], texts: Sequence[str], rounds: int) -> Dict[str, Any]:
    """Characters/s of every system, interleaved rounds with a rotating order, one warm-up pass each."""
    import spacy

    from spacy_bilstm_crf.threads import configure_threads

    pipelines = {name: spacy.load(paths[name]) for name in SYSTEMS}
    threads = {name: configure_threads(nlp) for name, nlp in pipelines.items()}
    characters = sum(len(text) for text in texts)
    for nlp in pipelines.values():
        list(nlp.pipe(texts[:200]))
    per_round: Dict[str, List[float]] = {name: [] for name in SYSTEMS}
    for round_index in range(rounds):
        for name in rotated(SYSTEMS, round_index):
            clear_segment_cache()  # every pass segments its texts, as new text would be
            start = time.perf_counter()
            for _ in pipelines[name].pipe(texts):
                pass
            per_round[name].append(characters / (time.perf_counter() - start))
        log(f"round {round_index}: " + ", ".join(f"{n} {per_round[n][-1]:.0f}" for n in SYSTEMS) + " chars/s")
    out: Dict[str, Any] = {"rounds": rounds, "threads": threads, "chars_per_s": {}}
    for name in SYSTEMS:
        out["chars_per_s"][name] = spread(per_round[name])
        out["chars_per_s"][name]["over_torch"] = spread([a / b for a, b in zip(per_round[name], per_round["torch"])])
        out["chars_per_s"][name]["over_ner"] = spread([a / b for a, b in zip(per_round[name], per_round["spacy_ner"])])
    return out


def installs(paths: Dict[str, Path], texts: Sequence[str], work: Path, repeats: int) -> Dict[str, Any]:
    """Install size, import and load time, and peak memory in fresh venvs."""
    dist = work / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO)], check=True)
    wheel = next(dist.glob("spacy_bilstm_crf-*.whl"))
    texts_file = work / "texts.json"
    texts_file.write_text(json.dumps(list(texts), ensure_ascii=False), encoding="utf8")
    plans = {
        "base": [f"{wheel}"],
        "torch": ["torch==2.13.0", f"{wheel}[torch]"],
        "onnx": [f"{wheel}[onnx]"],
    }
    out: Dict[str, Any] = {}
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    for name, requirements in plans.items():
        env_dir = work / f"venv-{name}"
        venv.create(env_dir, with_pip=True)
        python = str(env_dir / "bin" / "python")
        subprocess.run([python, "-m", "pip", "install", "-q", *requirements], check=True, env=env)
        site = Path(
            subprocess.run(
                [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        )
        entry: Dict[str, Any] = {"requirements": [r.replace(str(wheel), "spacy-bilstm-crf") for r in requirements]}
        entry["site_packages_mb"] = folder_mb(site)
        if name != "base":
            runtime = "torch" if name == "torch" else "onnxruntime"
            pipeline = paths["torch"] if name == "torch" else paths["onnx_float"]
            entry["runtime"] = runtime
            entry["import_runtime_seconds"] = spread(
                [timed_python(python, f"import {runtime}") for _ in range(repeats)]
            )
            loads = [load_and_run(python, pipeline, texts_file) for _ in range(repeats)]
            entry["import_spacy_and_load_seconds"] = spread([run["load_seconds"] for run in loads])
            entry["peak_rss_mb"] = spread([run["peak_rss_mb"] for run in loads])
        out[name] = entry
        log(f"venv {name}: {entry['site_packages_mb']:.0f} MB")
    for name in ("torch", "onnx"):
        out[name]["mb_over_base"] = out[name]["site_packages_mb"] - out["base"]["site_packages_mb"]
    out["onnx_over_torch"] = {
        "site_packages": out["onnx"]["site_packages_mb"] / out["torch"]["site_packages_mb"],
        "mb_over_base": out["onnx"]["mb_over_base"] / out["torch"]["mb_over_base"],
        "import_runtime": out["onnx"]["import_runtime_seconds"]["median"]
        / out["torch"]["import_runtime_seconds"]["median"],
        "import_spacy_and_load": out["onnx"]["import_spacy_and_load_seconds"]["median"]
        / out["torch"]["import_spacy_and_load_seconds"]["median"],
        "peak_rss": out["onnx"]["peak_rss_mb"]["median"] / out["torch"]["peak_rss_mb"]["median"],
    }
    return out


def folder_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            file = Path(root) / name
            if not file.is_symlink():
                total += file.stat().st_size
    return total / 1e6


def timed_python(python: str, code: str) -> float:
    start = time.perf_counter()
    subprocess.run([python, "-c", code], check=True)
    return time.perf_counter() - start


def load_and_run(python: str, pipeline: Path, texts_file: Path) -> Dict[str, float]:
    done = subprocess.run(
        [python, "-c", LOAD_SCRIPT, str(pipeline), str(texts_file)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(result: Dict[str, Any]) -> Dict[str, Any]:
    """The figures the report and the issue's targets need, from a result."""
    speed_ = result.get("speed", {}).get("chars_per_s", {})
    install = result.get("install", {})
    ratios = install.get("onnx_over_torch", {})
    acc = result.get("accuracy", {})
    targets = []
    if speed_:
        targets.append(
            {
                "target": "ONNX float inference >= 0.97x the torch pipeline",
                "value": speed_["onnx_float"]["over_torch"]["median"],
                "met": speed_["onnx_float"]["over_torch"]["median"] >= 0.97,
            }
        )
        int8 = speed_["onnx_int8"]["over_torch"]["median"]
        f1_change = acc.get("onnx_int8", {}).get("f1_minus_torch")
        targets.append(
            {
                "target": "int8 >= 1.25x the torch pipeline, F1 within 0.3 points",
                "value": int8,
                "f1_change_points": None if f1_change is None else 100 * f1_change,
                "met": int8 >= 1.25 and f1_change is not None and abs(100 * f1_change) <= 0.3,
            }
        )
    if ratios:
        targets.append(
            {
                "target": "install <= 1/4 of the torch install (site-packages over the package alone)",
                "value": ratios["mb_over_base"],
                "met": ratios["mb_over_base"] <= 0.25,
            }
        )
        targets.append(
            {
                "target": "import <= 1/2 the time (import spacy and load the pipeline)",
                "value": ratios["import_spacy_and_load"],
                "met": ratios["import_spacy_and_load"] <= 0.5,
            }
        )
    return {
        "package_hash": result.get("package_hash"),
        "ner_steps": result.get("ner_steps"),
        "export_seconds": result.get("export_seconds", {}),
        "accuracy": acc,
        "speed": result.get("speed", {}),
        "install": install,
        "profile": result.get("profile", {}),
        "stage_packages": {stage: prov["package_hash"] for stage, prov in result.get("stage_provenance", {}).items()},
        "targets": targets,
    }

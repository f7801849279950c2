"""Throughput on a busy or CPU-limited machine, by thread policy (issue 26).

``python -m bench contention --model PIPELINE --out bench/results/contention-msra.json``

Runs ``spacy-bilstm-crf annotate`` (the whole command, a fresh process) and a
bare ``nlp.pipe`` pass (timed after loading) over the first ``--sentences``
sentences of MSRA's train file, with 0, 1 and 2 competing CPU-bound
processes (``python -c "while True: pass"``), under two thread policies:

- ``old``: ``SPACY_BILSTM_CRF_THREADS=keep``, torch's own choice of one
  thread per core, which is what the package did before issue 26;
- ``auto``: the package's default plan (``spacy_bilstm_crf/threads.py``).

Policies alternate within each load and round, in turn first. Where the
machine lets this process make a cgroup v1 CPU group, the same runs are
repeated quiet inside a group whose quota is ``--quota-cpus`` CPUs (a
container's ``--cpus``). Every run is appended to ``--out`` as it finishes.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from .common import DEFAULT_DATA, log, write_json
from .provenance import git_commit, loadavg, machine_info, package_hash

POLICIES = {"old": "keep", "auto": "auto"}
CGROUP_CPU = Path("/sys/fs/cgroup/cpu")

PIPE_SCRIPT = """
import json, sys, time
import torch
from spacy_bilstm_crf.loading import load_pipeline
from spacy_bilstm_crf.threads import configure_threads
nlp = load_pipeline(sys.argv[1])
configure_threads(nlp)
texts = [json.loads(line)["text"] for line in open(sys.argv[2], encoding="utf8")]
start = time.perf_counter()
docs = list(nlp.pipe(texts, batch_size=64))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "docs": len(docs), "threads": torch.get_num_threads()}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="a trained pipeline folder")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with msra/train.txt")
    parser.add_argument("--sentences", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--loads", default="0,1,2", help="numbers of competing busy processes")
    parser.add_argument("--quota-cpus", type=float, default=1.0, help="the cgroup run's CPU quota (0: no such run)")
    parser.add_argument("--out", type=Path, required=True)


def msra_texts(path: Path, limit: int) -> List[str]:
    """The first ``limit`` sentences of an MSRA ``char tag`` file."""
    texts: List[str] = []
    chars: List[str] = []
    with path.open(encoding="utf8") as lines:
        for line in lines:
            fields = line.split()
            if fields:
                chars.append(fields[0])
            elif chars:
                texts.append("".join(chars))
                chars = []
                if len(texts) == limit:
                    break
    if chars and len(texts) < limit:
        texts.append("".join(chars))
    return texts


def _busy(n: int) -> List[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def _stop(procs: List[subprocess.Popen]) -> None:
    for proc in procs:
        proc.kill()
    for proc in procs:
        proc.wait()


def _in_group(command: List[str], group: Optional[Path]) -> List[str]:
    if group is None:
        return command
    return ["sh", "-c", f'echo $$ > {group / "cgroup.procs"} && exec "$@"', "sh", *command]


def _run_once(mode: str, policy: str, model: Path, data: Path, work: Path, group: Optional[Path]) -> Dict[str, Any]:
    env = {**os.environ, "SPACY_BILSTM_CRF_THREADS": POLICIES[policy]}
    env.pop("OMP_NUM_THREADS", None)
    if mode == "annotate":
        out = work / f"out-{time.monotonic_ns()}.jsonl"
        command = [sys.executable, "-m", "spacy_bilstm_crf", "annotate", str(model), str(data), str(out)]
        start = time.perf_counter()
        done = subprocess.run(_in_group(command, group), env=env, capture_output=True, text=True, timeout=1800)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"annotate failed: {done.stderr[-2000:]}")
        summary = json.loads((out / "_summary.json").read_text(encoding="utf8"))
        docs = summary["docs_this_run"]
        # docs_per_s: the whole command, interpreter start and loading included;
        # annotate_docs_per_s: annotate's own figure (from loading the pipeline on).
        return {
            "seconds": seconds,
            "docs": docs,
            "docs_per_s": docs / seconds,
            "annotate_docs_per_s": summary["docs_per_s"],
        }
    script = work / "pipe.py"
    script.write_text(PIPE_SCRIPT, encoding="utf8")
    command = [sys.executable, str(script), str(model), str(data)]
    done = subprocess.run(_in_group(command, group), env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"nlp.pipe failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {**result, "docs_per_s": result["docs"] / result["seconds"]}


def _make_group(quota_cpus: float) -> Optional[Path]:
    """A cgroup v1 CPU group with the quota, or None where this process may not make one."""
    if quota_cpus <= 0 or not CGROUP_CPU.is_dir():
        return None
    group = CGROUP_CPU / f"bench-contention-{os.getpid()}"
    try:
        group.mkdir()
        period = int((CGROUP_CPU / "cpu.cfs_period_us").read_text() or 100000)
        (group / "cpu.cfs_period_us").write_text(str(period))
        (group / "cpu.cfs_quota_us").write_text(str(int(quota_cpus * period)))
    except OSError as exc:
        log(f"no cgroup run: {exc}")
        return None
    return group


def contention(args: argparse.Namespace) -> int:
    texts = msra_texts(args.data / "msra" / "train.txt", args.sentences)
    loads = [int(n) for n in args.loads.split(",")]
    result: Dict[str, Any] = {
        "what": "docs/s of annotate (whole command) and nlp.pipe (after loading) under competing busy processes",
        "model": str(args.model),
        "model_meta": json.loads((args.model / "meta.json").read_text(encoding="utf8")).get("components"),
        "sentences": len(texts),
        "characters": sum(len(t) for t in texts),
        "policies": POLICIES,
        "package_hash": package_hash(),
        **git_commit(),
        "machine": machine_info(),
        "runs": [],
    }
    group = _make_group(args.quota_cpus)
    result["cgroup_quota_cpus"] = args.quota_cpus if group else None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            data = work / "texts.jsonl"
            data.write_text(
                "".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)),
                encoding="utf8",
            )
            settings = [(n, None) for n in loads] + ([(0, group)] if group else [])
            for round_index in range(args.rounds):
                for competitors, cgroup in settings:
                    order = list(POLICIES) if round_index % 2 == 0 else list(reversed(POLICIES))
                    busy = _busy(competitors)
                    try:
                        time.sleep(1.0)
                        for policy in order:
                            for mode in ("annotate", "pipe"):
                                before = loadavg()
                                run = _run_once(mode, policy, args.model, data, work, cgroup)
                                run.update(
                                    mode=mode,
                                    policy=policy,
                                    competitors=competitors,
                                    round=round_index,
                                    cgroup_quota_cpus=args.quota_cpus if cgroup else None,
                                    loadavg_before=before,
                                    loadavg_after=loadavg(),
                                )
                                result["runs"].append(run)
                                write_json(args.out, result)
                                where = f"round {round_index}, {competitors} busy, quota {run['cgroup_quota_cpus']}"
                                log(f"{where}, {mode} {policy}: {run['docs_per_s']:.0f} docs/s")
                    finally:
                        _stop(busy)
    finally:
        if group is not None:
            group.rmdir()
    write_json(args.out, result)
    return 0


def _median(values: List[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def summarize(result: Dict[str, Any]) -> Dict[str, Any]:
    """Median docs/s over the rounds per (mode, policy, setting), each
    setting's ratio to the same policy's quiet figure, and the targets of
    issue 26. For ``annotate`` the figure is annotate's own (from loading the
    pipeline on); ``docs_per_s`` of the whole command is kept beside it."""
    groups: Dict[tuple, List[Dict[str, Any]]] = {}
    for run in result["runs"]:
        setting = "quota" if run.get("cgroup_quota_cpus") else f"busy{run['competitors']}"
        groups.setdefault((run["mode"], run["policy"], setting), []).append(run)
    rows: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for (mode, policy, setting), runs in sorted(groups.items()):
        key = "annotate_docs_per_s" if mode == "annotate" else "docs_per_s"
        rows.setdefault(f"{mode}/{policy}", {})[setting] = {
            "docs_per_s": _median([r[key] for r in runs]),
            "values": [r[key] for r in runs],
            "whole_command_docs_per_s": _median([r["docs_per_s"] for r in runs]) if mode == "annotate" else None,
            "threads": sorted({r["threads"] for r in runs if "threads" in r}),
        }
    for settings in rows.values():
        quiet = settings.get("busy0", {}).get("docs_per_s")
        for entry in settings.values():
            entry["over_quiet"] = entry["docs_per_s"] / quiet if quiet else None
    targets = []
    for mode in ("annotate", "pipe"):
        new, old = rows.get(f"{mode}/auto", {}), rows.get(f"{mode}/old", {})
        for setting, goal, minimum in (
            ("busy2", "with 2 busy processes, >= 0.5x quiet", 0.5),
            ("busy1", "with 1 busy process, >= 0.9x quiet", 0.9),
        ):
            value = new.get(setting, {}).get("over_quiet")
            targets.append(
                {
                    "target": f"{mode}: {goal}",
                    "value": value,
                    "old": old.get(setting, {}).get("over_quiet"),
                    "met": None if value is None else value >= minimum,
                }
            )
        if "busy0" in new and "busy0" in old:
            value = new["busy0"]["docs_per_s"] / old["busy0"]["docs_per_s"]
            # "no lower": within the rounds' spread counts as no lower
            spread = min(old["busy0"]["values"]) / old["busy0"]["docs_per_s"]
            targets.append(
                {
                    "target": f"{mode}: quiet docs/s no lower than the old policy's",
                    "value": value,
                    "old": 1.0,
                    "met": value >= spread,
                }
            )
    return {
        "sentences": result["sentences"],
        "characters": result["characters"],
        "rounds": 1 + max((r["round"] for r in result["runs"]), default=-1),
        "cgroup_quota_cpus": result.get("cgroup_quota_cpus"),
        "package_hash": result["package_hash"],
        "commit": result.get("commit"),
        "torch_default_threads": result["machine"].get("torch_threads"),
        "rows": rows,
        "targets": targets,
    }

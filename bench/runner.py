"""``python -m bench run`` and ``python -m bench plan``: run the cells of the
benchmark (skipping those already done for this package code), or list them
with their status and estimated time."""

import argparse
import os
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .budgets import corpus_spec
from .cell_plan import MissingGridError, chosen_settings, first_point_settings, planned_keys
from .cells import CellError, CellStore, run_cells, select, spec_json
from .common import CELLS, DEFAULT_DATA, REPO, log, read_json, write_json
from .docbins import prepare_corpus, read_meta
from .provenance import package_hash
from .specs import (
    ABLATION,
    GRID,
    MAIN,
    MICRO,
    SPEED,
    STAGES,
    TRAINING_STAGES,
    CellKey,
    CellSpec,
    CorpusSpec,
    setting_scale,
)
from .systems import SYSTEMS, trained_systems

DEFAULT_WORK = REPO / "bench" / "work"
MAX_GRID_ROUNDS = 12  # rounds of grid extension before the run stops extending (each adds at most 4 cells a system)
MAIN_ROUNDS = 2  # the main stage's extra seeds are planned from the cells of its first seeds


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny data, tiny random BERT, one process")
    parser.add_argument(
        "--out", type=Path, help="results folder: cells in OUT/cells (default: bench/results; --quick: a temp folder)"
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder with conll2003/ and msra/ (default: ../shared/data)"
    )
    parser.add_argument(
        "--transformer",
        help="local BERT folder for CoNLL (e.g. from ../shared/bin/get-minilm); --quick builds a tiny one",
    )
    parser.add_argument(
        "--work", type=Path, help="folder for prepared corpora and models (default: bench/work, --quick: OUT/work)"
    )
    parser.add_argument("--corpora", default="conll2003,msra", help="comma-separated subset of conll2003,msra")
    parser.add_argument("--stage", default=",".join(STAGES), help=f"comma-separated stages, of {','.join(STAGES)}")
    parser.add_argument(
        "--cells", action="append", help="glob over cell ids (corpus/stage/system/setting/seedN); repeatable"
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="device of the speed and micro cells")
    parser.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        help="run each cell in a fresh process (default: yes for a full run, no for --quick)",
    )
    parser.add_argument("--threads", type=int, help="torch threads per cell (default: torch's; --quick: 1)")


def _listed(text: str, allowed: Sequence[str], what: str) -> List[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in items if x not in allowed]
    if unknown:
        raise SystemExit(f"unknown {what} {unknown}: choose from {list(allowed)}")
    return items


class Context:
    """One invocation's folders, corpora, transformer and package hash."""

    def __init__(self, args: argparse.Namespace, prepare: bool = True) -> None:
        self.quick: bool = args.quick
        self.out: Path = args.out or (Path(tempfile.mkdtemp(prefix="bench-quick-")) if self.quick else CELLS.parent)
        self.store = CellStore(self.out / "cells")
        self.work: Path = args.work or (self.out / "work" if self.quick else DEFAULT_WORK)
        self.corpora: List[CorpusSpec] = [
            corpus_spec(c, self.quick) for c in _listed(args.corpora, ("conll2003", "msra"), "corpora")
        ]
        self.stages = _listed(args.stage, STAGES, "stages")
        self.device: str = args.device
        self.threads: Optional[int] = args.threads or (1 if self.quick else None)
        self.package_hash = package_hash()
        self.transformer: Optional[str] = args.transformer
        self.info: Dict[str, Dict[str, Any]] = {}
        if prepare:
            for corpus in self.corpora:
                self.info[corpus.name] = prepare_corpus(
                    corpus.name, args.data, self.corpus_dir(corpus.name), corpus.limits, allow_tiny=self.quick
                )
            if self.transformer is None and self.quick and any(c.name == "conll2003" for c in self.corpora):
                self.transformer = tiny_bert(self.work / "tiny-bert", self.corpus_dir("conll2003"))
            if self.transformer is None and any(c.name == "conll2003" for c in self.corpora):
                raise SystemExit("CoNLL needs --transformer DIR (e.g. ../shared/bin/get-minilm /tmp/minilm)")
            if self.transformer is not None:
                self.transformer = str(Path(self.transformer).resolve())

    def plan(self, stage: str, patterns: Optional[Sequence[str]]) -> Tuple[List[CellKey], List[str]]:
        """The stage's cells (matching ``patterns``) as planned from the cells
        there are now, and why a corpus has none (its grid is not complete)."""
        keys: List[CellKey] = []
        errors: List[str] = []
        for corpora in [[c] for c in self.corpora] if stage != MICRO else [self.corpora]:
            try:
                keys += planned_keys(corpora, (stage,), self.store, self.package_hash, self.device)
            except MissingGridError as exc:
                log(str(exc))
                errors.append(str(exc))
        return select(keys, patterns), errors

    def corpus_dir(self, name: str) -> Path:
        return self.work / "corpora" / name

    def spec(self, key: CellKey) -> CellSpec:
        corpus = corpus_spec(key.corpus, self.quick) if key.corpus != "any" else None
        budget = None
        if corpus is not None and key.stage in TRAINING_STAGES:
            epoch = sum(read_meta(self.corpus_dir(key.corpus))["lengths"]["train"])
            rule = {GRID: corpus.grid, MAIN: corpus.main, ABLATION: corpus.ablation}[key.stage]
            assert rule is not None, f"{corpus.name} has no {key.stage} budget"
            budget = rule.budget(epoch)
        systems: List[str] = []
        scales: Dict[str, float] = {}
        if key.stage == SPEED and corpus is not None:
            systems = list(SYSTEMS[corpus.name])
            try:  # the grid's choices, which do not change speed; the first scale before the grid ran
                settings = chosen_settings(corpus, self.store, self.package_hash)
                scales = {name: setting_scale(setting) for name, setting in settings.items()}
            except MissingGridError:
                scales = {name: corpus.grid_scales[0] for name in trained_systems(corpus.name)}
        corpus_dir = self.corpus_dir(key.corpus) if key.corpus != "any" else self.work
        return CellSpec(
            key=key,
            corpus_dir=str(corpus_dir),
            model_dir=str(self.work / "models" / key.relpath.replace(".json", "")),
            transformer=self.transformer if key.corpus in ("conll2003",) else None,
            threads=self.threads,
            budget=budget,
            systems=tuple(systems),
            scales=scales,
            quick=self.quick,
        )


def tiny_bert(path: Path, corpus_dir: Path) -> str:
    import spacy

    from spacy_bilstm_crf.testing import build_tiny_bert

    from .docbins import load_docs

    vocab = spacy.blank("en").vocab
    words = {
        t.text for split in ("train", "dev", "test") for d in load_docs(corpus_dir / f"{split}.spacy", vocab) for t in d
    }
    return str(build_tiny_bert(path, words))


def subprocess_runner(work: Path) -> Callable[[CellSpec], Dict[str, Any]]:
    """Run each cell in a fresh Python process (its own memory and peak RSS)."""

    def run(spec: CellSpec) -> Dict[str, Any]:
        stem = work / "tasks" / spec.key.relpath.replace(".json", "")
        # Appended, not with_suffix: a setting such as x1-lr0.002 has a dot of its own.
        spec_path = write_json(stem.parent / f"{stem.name}.spec.json", spec_json(spec))
        out_path = stem.parent / f"{stem.name}.cell.json"
        out_path.unlink(missing_ok=True)
        env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
        log(f"== {spec.key.cell_id}")
        proc = subprocess.run([sys.executable, "-m", "bench.worker", str(spec_path), str(out_path)], cwd=REPO, env=env)
        if proc.returncode != 0 or not out_path.exists():
            raise RuntimeError(f"worker exited {proc.returncode}")
        return read_json(out_path)

    return run


def in_process_runner(spec: CellSpec) -> Dict[str, Any]:
    from .worker import run_cell

    log(f"== {spec.key.cell_id}")
    return run_cell(spec)


def stage_rounds(stage: str) -> int:
    """How often ``run`` plans a stage: the grid's extension and the main
    stage's extra seeds depend on the cells the stage already has."""
    return {GRID: MAX_GRID_ROUNDS, MAIN: MAIN_ROUNDS}.get(stage, 1)


def run_stage(
    stage: str,
    plan: Callable[[], Tuple[List[CellKey], List[str]]],
    run_keys: Callable[[List[CellKey]], Dict[str, List[str]]],
) -> List[str]:
    """Plan and run ``stage`` round by round (``stage_rounds``) until a round
    runs nothing new or a cell fails; returns the failures."""
    failures: List[str] = []
    for _ in range(stage_rounds(stage)):
        keys, errors = plan()
        failures += [e for e in errors if e not in failures]  # a corpus without a grid fails every round
        done = run_keys(keys)
        log(f"{stage}: ran {len(done['ran'])}, skipped {len(done['skipped'])} (done), failed {len(done['failed'])}")
        failures += done["failed"]
        if not done["ran"] or done["failed"]:
            break
    return failures


def run(args: argparse.Namespace) -> int:
    ctx = Context(args)
    log(f"{'quick' if ctx.quick else 'full'} run: cells in {ctx.store.root}, package {ctx.package_hash[:12]}")
    isolate = not ctx.quick if args.isolate is None else args.isolate
    runner = subprocess_runner(ctx.work) if isolate else in_process_runner

    def run_keys(keys: List[CellKey]) -> Dict[str, List[str]]:
        return run_cells([ctx.spec(k) for k in keys], ctx.store, ctx.package_hash, runner)

    failures: List[str] = []
    for stage in (s for s in STAGES if s in ctx.stages):
        failures += run_stage(stage, partial(ctx.plan, stage, args.cells), run_keys)
    if ctx.quick:
        from .report import write_report

        try:
            paths = write_report(ctx.store.root, ctx.out / "benchmarks.md", ctx.out / "img", ctx.out / "aggregate.json")
            log("report: " + ", ".join(str(p) for p in paths))
            print_cpu_ratios(read_json(ctx.out / "aggregate.json"))
        except CellError as exc:
            failures.append(f"report: {exc}")
    if failures:
        log("failures:\n  " + "\n  ".join(failures))
        return 1
    return 0


def print_cpu_ratios(aggregate: Dict[str, Any]) -> None:
    for corpus, ratios in sorted(aggregate.get("cpu_ratios", {}).items()):
        for name, values in sorted(ratios.items()):
            shown = ", ".join(f"{k} {v:.3f}" for k, v in values.items() if isinstance(v, float))
            print(f"  cpu {corpus}/{name}: {shown}")


def plan(args: argparse.Namespace) -> int:
    """List the cells of the selected stages: done, stale (other package code) or to do, with estimates."""
    from .estimate import OldRun, cell_seconds

    ctx = Context(args, prepare=False)
    old = OldRun()
    totals = [0.0, 0.0]
    unknown = 0
    for stage in (s for s in STAGES if s in ctx.stages):
        # A corpus whose grid is not complete: every system at each setting is
        # possible; show the first. The others show their grid's choices.
        settings: Dict[str, Dict[str, str]] = {}
        if stage == MAIN:
            for spec in ctx.corpora:
                try:
                    settings[spec.name] = chosen_settings(spec, ctx.store, ctx.package_hash)
                except MissingGridError:
                    settings[spec.name] = first_point_settings(spec)
                    print(f"# {stage}: {spec.name}'s grid is not complete; settings shown are placeholders")
        keys = planned_keys(ctx.corpora, (stage,), ctx.store, ctx.package_hash, ctx.device, settings)
        for key in select(keys, args.cells):
            cell = ctx.store.load(key)
            status = "todo" if cell is None else ("done" if cell.get("package_hash") == ctx.package_hash else "stale")
            corpus = corpus_spec(key.corpus, ctx.quick) if key.corpus != "any" else None
            n_systems = len(SYSTEMS.get(key.corpus, {}))
            est = cell_seconds(old, corpus, key, n_systems)
            if est is None:
                unknown += 1
                text = "?"
            else:
                text = f"{est[0] / 60:.0f}-{est[1] / 60:.0f} min" if est[0] != est[1] else f"{est[0] / 60:.0f} min"
                if status != "done":
                    totals[0] += est[0]
                    totals[1] += est[1]
            print(f"{status:5} {key.cell_id:55} {text}")
    print(
        f"to do: {totals[0] / 3600:.1f}-{totals[1] / 3600:.1f} hours on 2 quiet cores (old run's rates)"
        + (f"; {unknown} cells without an estimate" if unknown else "")
    )
    return 0

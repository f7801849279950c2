"""One run of ``annotate``: plan the input, open the output folder, annotate
the shards not done yet with the chosen engine, check the output folder's files
against its manifest, finish the job."""

import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Dict, TextIO

from .annotation import code_fingerprint, model_fingerprint
from .inputs import make_plan
from .output_folder import OutputFolder
from .records import Fields, Plan
from .reporting import DuplicateIds, Progress, Summary, summarize
from .settings import AnnotateSettings, OutputFormat, import_pyarrow, import_ray, input_format, output_format


def annotate(settings: AnnotateSettings, stream: TextIO = sys.stderr) -> Summary:
    """Annotate ``settings.input`` into the folder ``settings.output``, or resume
    the job that folder holds; progress goes to ``stream``."""
    started = time.monotonic()
    settings.check()
    source_format = input_format(settings.input, settings.input_format)
    target_format = output_format(settings.output, settings.output_format)
    if "parquet" in (source_format, target_format) or settings.engine == "ray":
        import_pyarrow()
    if settings.engine == "ray":
        import_ray(starts_cluster=not settings.address)
    _check_apart(settings.input, settings.output)
    settings = replace(settings, model=_resolve_model(settings.model))
    if settings.engine == "local" and settings.n_process > 1:
        settings = replace(settings, n_process=_processes_for_cpus(settings.n_process, stream))
    fields = Fields(settings.text_field, settings.id_field)
    plan = make_plan(settings.input, source_format, fields, settings.shard_size)
    output = OutputFolder(settings.output, target_format, job_description(plan, settings, target_format), plan)
    try:
        done = output.manifest.done_shards
        pending = [shard for shard in plan.shards if shard.index not in done]
        docs_this_run = sum(shard.size for shard in pending)
        progress = Progress(docs_this_run, stream=stream, bar=settings.progress_bar, log_every=settings.log_every)
        try:
            if pending and settings.engine == "local":
                from .local_engine import run_local

                run_local(plan, pending, settings, output, progress)
            elif pending:
                from .ray_engine import run_ray

                run_ray(plan, pending, settings, output, progress)
        finally:
            progress.close()
        duplicates = DuplicateIds()
        output.check_files(duplicates.add)
        duplicates.count_exactly(output.output_ids())
        wall_s = time.monotonic() - started
        commits = output.manifest.commits
        summary = summarize(str(settings.output), commits, duplicates, docs_this_run, wall_s, settings.engine)
        if summary.docs_in != plan.total:
            raise RuntimeError(f"{summary.docs_in} records committed, {plan.total} in the input")
        output.finalize(summary.to_json())
    finally:
        output.close()
    return summary


def job_description(plan: Plan, settings: AnnotateSettings, target_format: OutputFormat) -> Dict[str, Any]:
    """What a job's output depends on; a resumed run must match it."""
    return {
        "inputs": [asdict(file) for file in plan.files],
        "input_format": plan.input_format,
        "text_field": plan.fields.text,
        "id_field": plan.fields.id,
        "id_type": plan.fields.id_type,
        "shard_size": settings.shard_size,
        "output_format": target_format,
        "model": settings.model,
        "model_files": model_fingerprint(settings.model),
        "code": str(settings.code.resolve()) if settings.code else None,
        "code_sha256": code_fingerprint(settings.code),
        "spans_key": settings.spans_key,
    }


def _processes_for_cpus(n_process: int, stream: TextIO) -> int:
    """``--n-process``, capped at the CPUs this process may use (affinity and
    cgroup quota): more worker processes than CPUs only take turns."""
    from ..threads import usable_cpus

    cpus = usable_cpus()
    if n_process <= cpus:
        return n_process
    print(f"annotate: --n-process {n_process} lowered to {cpus}, the CPUs this process may use", file=stream)
    return cpus


def _check_apart(source: Path, target: Path) -> None:
    """Refuse an output folder inside the input folder (every run would read its
    own output as input) or an input inside the output folder."""
    source, target = source.resolve(), target.resolve()
    if source == target or source in target.parents:
        raise ValueError(
            f"{target} is inside the input folder {source}: annotate would read its own output as input; "
            "choose an output folder outside it"
        )
    if target in source.parents:
        raise ValueError(f"{source} is inside the output folder {target}; choose an output folder elsewhere")


def _resolve_model(model: str) -> str:
    """A pipeline folder as an absolute path (workers may run elsewhere); a
    package name as it is."""
    path = Path(model)
    return str(path.resolve()) if path.exists() else model

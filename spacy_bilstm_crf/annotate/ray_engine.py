"""The Ray engine: Ray Data reads the pending shards (``ShardDatasource``),
``map_batches`` annotates them in workers that each load the pipeline once
(``PipelineAnnotator``), and Ray's writers write the output.

Shards go through in waves of a few per worker; a wave's files are staged and
committed to the manifest when the whole wave is written, so a killed job
redoes at most the waves it had not committed.

Worker sizing: Ray Data can deadlock on its own resource budget: with 2 CPUs,
two annotating actors of 1 CPU each leave nothing for the tasks that read and
write, and the job hangs. The workers together get at most the CPUs left after a
reserve for those tasks, and the tasks ask for no more than that reserve
(``size_workers``). What runs inside Ray's tasks and actors is in ``ray_tasks``.
"""

import ipaddress
import logging
import os
from collections import Counter
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .output_folder import OutputFolder
from .records import Location, Plan, Reject, RejectedRecordError, Shard, Unit
from .reporting import Progress
from .settings import LOOPBACK_ONLY, AnnotateSettings

SHARDS_PER_WORKER_PER_WAVE = 4
RESERVED_SHARE = 0.05


@dataclass(frozen=True)
class WorkerSizing:
    """``workers`` actors of ``cpus_per_worker`` CPUs (and ``gpus_per_worker``
    GPUs); read and write tasks of ``task_cpus`` CPUs."""

    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    task_cpus: float


def size_workers(
    cluster_cpus: float, cluster_gpus: float, workers: Optional[int] = None, gpu_per_worker: float = 0.0
) -> WorkerSizing:
    """Fit the workers into a cluster of ``cluster_cpus`` CPUs and
    ``cluster_gpus`` GPUs. Without ``workers``: one per GPU share with
    ``gpu_per_worker``, else one per CPU left after the reserve."""
    if cluster_cpus <= 0:
        raise ValueError("the Ray cluster has no CPUs")
    reserve = max(min(1.0, cluster_cpus / 2), RESERVED_SHARE * cluster_cpus)
    free = cluster_cpus - reserve
    if gpu_per_worker > 0:
        fitting = int(cluster_gpus / gpu_per_worker + 1e-9)
        if fitting < 1:
            raise ValueError(f"--gpu-per-worker {gpu_per_worker}: the Ray cluster has {cluster_gpus:g} GPUs")
        if workers is not None and workers > fitting:
            raise ValueError(
                f"--workers {workers} with --gpu-per-worker {gpu_per_worker} needs "
                f"{workers * gpu_per_worker:g} GPUs; the Ray cluster has {cluster_gpus:g}"
            )
        workers = workers or fitting
    workers = workers or max(1, int(free))
    cpus = min(1.0, _round_down(free / workers))
    return WorkerSizing(workers, cpus, gpu_per_worker, _round_down(reserve))


def _round_down(value: float) -> float:
    return int(value * 1000) / 1000


def run_ray(
    plan: Plan, pending: Sequence[Shard], settings: AnnotateSettings, output: OutputFolder, progress: Progress
) -> None:
    """Annotate ``pending`` on the Ray cluster at ``settings.address``, or on a
    local one started (and stopped) here."""
    import ray

    started = connect(settings.address)
    try:
        _quiet_ray_data()
        resources = ray.cluster_resources()
        sizing = size_workers(
            resources.get("CPU", 0.0), resources.get("GPU", 0.0), settings.workers, settings.gpu_per_worker
        )
        per_wave = SHARDS_PER_WORKER_PER_WAVE * sizing.workers
        for start in range(0, len(pending), per_wave):
            wave = pending[start : start + per_wave]
            _run_wave(plan, wave, settings, sizing, output)
            progress.advance(sum(shard.size for shard in wave))
    finally:
        if started:
            ray.shutdown()


def _run_wave(
    plan: Plan, wave: Sequence[Shard], settings: AnnotateSettings, sizing: WorkerSizing, output: OutputFolder
) -> None:
    import ray
    from ray.data.expressions import col

    from .ray_tasks import ENTITIES, REASON, PipelineAnnotator, ShardDatasource

    fields = plan.fields
    source = ShardDatasource(plan.input_format, wave, fields, settings.strict)
    annotator_settings = {
        "model": settings.model,
        "fields": fields,
        "batch_size": settings.batch_size,
        "spans_key": settings.spans_key,
        "code": str(settings.code) if settings.code else None,
        "gpu": sizing.gpus_per_worker > 0,
    }
    dataset = ray.data.read_datasource(source, num_cpus=sizing.task_cpus).map_batches(
        PipelineAnnotator,
        fn_constructor_kwargs=annotator_settings,
        batch_size=settings.batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=sizing.workers),
        num_cpus=sizing.cpus_per_worker,
        num_gpus=sizing.gpus_per_worker or None,
    )
    try:
        annotated = dataset.materialize()
    except Exception as exc:
        rejected = _rejected_record(exc)
        if rejected is not None:
            raise rejected from None
        raise
    count, entities, rejects = _tally(annotated, "row" if plan.input_format == "parquet" else "line")
    if rejects and settings.strict:  # read tasks stopped at theirs: these are texts a worker refused
        raise RejectedRecordError(min(rejects, key=lambda reject: reject.position))
    staging = output.staging / f"wave-{wave[0].index:06d}"
    if count:
        good = annotated.filter(expr=col(REASON).is_null(), num_cpus=sizing.task_cpus) if rejects else annotated
        good = good.select_columns([fields.id, ENTITIES], num_cpus=sizing.task_cpus)
        remote_args = {"num_cpus": sizing.task_cpus}
        if output.output_format == "jsonl":
            good.write_json(str(staging), force_ascii=False, ray_remote_args=remote_args)
        else:
            good.write_parquet(str(staging), ray_remote_args=remote_args)
    staged = sorted(staging.iterdir()) if staging.exists() else []
    output.commit(wave, staged, rejects, count, entities)


def _tally(annotated: Any, unit: Unit) -> Tuple[int, Dict[str, int], List[Reject]]:
    """Docs annotated, entities per label and the rejects of an annotated wave."""
    import pyarrow.compute as pc

    from .ray_tasks import ENTITIES, FILE, NUMBER, POSITION, REASON

    count = 0
    entities: Counter = Counter()
    rejects: List[Reject] = []
    for batch in annotated.iter_batches(batch_format="pyarrow", batch_size=None):
        is_good = pc.is_null(batch.column(REASON))
        good = batch.filter(is_good)
        count += good.num_rows
        labels = pc.struct_field(pc.list_flatten(good.column(ENTITIES)), "label")
        for item in pc.value_counts(labels).to_pylist():
            entities[item["values"]] += item["counts"]
        for row in batch.filter(pc.invert(is_good)).select([POSITION, FILE, NUMBER, REASON]).to_pylist():
            rejects.append(Reject(row[POSITION], Location(row[FILE], unit, row[NUMBER]), row[REASON]))
    return count, dict(entities), rejects


def connect(address: Optional[str]) -> bool:
    """Connect to the cluster at ``address``, or start a local one that listens
    on loopback only; True when this call did either (and the engine must shut
    Ray down). ``import_ray(starts_cluster=True)`` must have run first."""
    import ray

    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
        return True
    context = ray.init(include_dashboard=False, log_to_driver=False)
    node = str(getattr(context, "address_info", {}).get("node_ip_address", ""))
    if not _is_loopback(node) and os.environ.get(LOOPBACK_ONLY) != "1":
        ray.shutdown()
        raise ValueError(
            f"the local Ray cluster started on {node}, not on loopback, because Ray was imported before annotate; "
            f"set {LOOPBACK_ONLY}=0 before importing ray, or pass --address"
        )
    return True


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def _quiet_ray_data() -> None:
    """No Ray progress bars or per-dataset log lines: the engine reports progress."""
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)


def _rejected_record(error: BaseException) -> Optional[RejectedRecordError]:
    """The ``--strict`` error inside the error a Ray task raised, if that is
    what failed the wave."""
    stack: List[Optional[BaseException]] = [error]
    seen = set()
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        reject = getattr(current, "reject", None)
        if isinstance(current, RejectedRecordError) and isinstance(reject, Reject):
            return RejectedRecordError(reject)
        stack += [getattr(current, "cause", None), current.__cause__, current.__context__]
    return None

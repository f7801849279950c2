"""How many Ray workers to start and what each asks for, so that Ray Data's
read and write tasks always find a free CPU beside them.

Ray Data can deadlock on its own resource budget: with 2 CPUs, two annotating
actors of 1 CPU each leave nothing for the tasks that read and write, and the
job hangs. The workers together get at most the CPUs left after a reserve for
those tasks, and the tasks ask for no more than that reserve."""

from dataclasses import dataclass
from typing import Optional

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

"""The package's torch thread policy, in one place.

Importing the package changes nothing in the process: no thread count is
set and no fork hook is registered.

**Workers.** From the first time a ``crf_ner`` component runs torch in a
process (``initialize``, ``update``, ``rehearse`` or ``predict``),
:func:`apply_thread_policy`:

- registers, once per process, an at-fork hook that sets torch to one thread
  in a child forked from this process. ``nlp.pipe(texts, n_process=N)`` forks
  its workers on Linux, and torch's OpenMP thread pool does not survive
  ``fork``: a forked child that runs a parallel kernel hangs;
- in a multiprocessing child (a worker of ``nlp.pipe(n_process=N)``, also
  under the spawn start method) sets torch's thread count, once.

A forked worker runs torch on one thread: more would hang where the parent
has already used torch's thread pool (GNU OpenMP's pool is not fork-safe). A
spawned worker runs on the threads :func:`configure_threads` planned for it,
else on ``SPACY_BILSTM_CRF_THREADS`` threads where that is a number, else on
one.

**The process itself.** The library leaves the thread count of the process it
runs in alone: that belongs to the application, which can call
:func:`configure_threads`. The command line (``annotate``, ``predict``,
``explain``, ``render``) calls it for you. Its plan, under the default
``SPACY_BILSTM_CRF_THREADS=auto``:

- the CPUs the process may use are those of its affinity mask, capped by its
  cgroup's CPU quota (a container's ``--cpus``), not the host's core count;
- a pipeline without a transformer runs torch on **one thread** per process.
  Its layers are small (widths of about a hundred), so a second thread gains
  nothing even on an idle machine, and torch's OpenMP threads spin while they
  wait for each other: with two other busy processes on two cores, two
  threads ran at 0.06x the idle speed (docs/speed.md, bench/results);
- a pipeline with a transformer gets the usable CPUs divided among its
  processes (``n_process``), at least one each; forked workers, as above,
  get one.

``SPACY_BILSTM_CRF_THREADS=N`` asks for N threads per process instead, and
``keep`` leaves torch's own choice (one thread per core) in place.

**Without torch.** An exported pipeline runs onnxruntime instead: its
sessions take :func:`runtime_threads` threads, the count this policy set in
the process (or would set), and their waiting threads do not spin. Nothing
here imports torch: the torch count is set where torch is loaded already.
"""

import math
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any, Optional, Tuple

THREADS_ENV = "SPACY_BILSTM_CRF_THREADS"
# What configure_threads planned for the workers; they inherit the environment.
WORKER_THREADS_ENV = "SPACY_BILSTM_CRF_WORKER_THREADS"

_fork_hook_registered = False
_threads_set_in: Optional[int] = None  # the pid of the child process already set up
_planned: Optional[Tuple[int, int]] = None  # (pid, threads) the policy last chose in a process


def apply_thread_policy() -> None:
    """Apply the workers' policy above; cheap after the first call in a process."""
    global _fork_hook_registered, _threads_set_in
    if not _fork_hook_registered:
        if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
            os.register_at_fork(after_in_child=_worker_threads_after_fork)
        _fork_hook_registered = True
    pid = os.getpid()
    if _threads_set_in != pid:
        if multiprocessing.parent_process() is not None:
            forked = multiprocessing.get_start_method() == "fork"
            _set_threads(1 if forked else _worker_thread_count())
        _threads_set_in = pid


def configure_threads(nlp: Any, n_process: int = 1) -> Optional[int]:
    """Set torch's thread count for running ``nlp`` in ``n_process`` processes
    by the plan above; return the count per process, or None under ``keep``.

    With ``n_process`` > 1 the count is for the workers (set through
    ``SPACY_BILSTM_CRF_WORKER_THREADS`` in this process's environment, which
    the workers inherit); the main process, which only hands out the texts,
    keeps its own.
    """
    setting = thread_setting()
    if setting == "keep":
        return None
    if setting == "auto":
        threads = max(1, usable_cpus() // max(1, n_process)) if has_transformer(nlp) else 1
    else:
        threads = int(setting)
    if n_process > 1:
        os.environ[WORKER_THREADS_ENV] = str(threads)
    else:
        _set_threads(threads)
    return threads


def runtime_threads() -> Optional[int]:
    """The thread count for a runtime other than torch (onnxruntime) in this
    process: what the policy set here, else what it would set for a pipeline
    without a transformer (one, or ``SPACY_BILSTM_CRF_THREADS=N``); None
    under ``keep`` (the runtime's own choice)."""
    setting = thread_setting()
    if setting == "keep":
        return None
    if _planned is not None and _planned[0] == os.getpid():
        return _planned[1]  # set by configure_threads, or in a worker by apply_thread_policy or the fork hook
    return 1 if setting == "auto" else int(setting)


def thread_setting() -> str:
    """``SPACY_BILSTM_CRF_THREADS``: ``auto`` (the default), ``keep`` or a
    positive number; anything else is a ValueError that names the variable."""
    value = os.environ.get(THREADS_ENV, "auto").strip().lower() or "auto"
    if value in ("auto", "keep") or (value.isdigit() and int(value) > 0):
        return value
    raise ValueError(f"{THREADS_ENV}={value!r}: expected 'auto', 'keep' or a positive number of threads")


def has_transformer(nlp: Any) -> bool:
    """Whether a pipe of ``nlp`` comes from a transformer factory."""
    return any("transformer" in nlp.get_pipe_meta(name).factory for name in nlp.pipe_names)


def usable_cpus(root: Path = Path("/")) -> int:
    """The CPUs this process may use: its affinity mask, capped by the CPU
    quota of its cgroup (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``) and of
    the cgroups above it, rounded down, at least 1. ``root`` is for tests."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota(root)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    return max(1, cpus)


def _cgroup_quota(root: Path) -> Optional[float]:
    """The smallest CPU quota (in CPUs) on the way from this process's cgroup
    up to the hierarchy's root, or None where there is none."""
    try:
        lines = (root / "proc/self/cgroup").read_text(encoding="utf8").splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":  # cgroup v2
            mount = root / "sys/fs/cgroup"
            quotas += [q for q in (_v2_quota(d / "cpu.max") for d in _up_from(mount, path)) if q is not None]
        elif "cpu" in controllers.split(","):
            for name in (controllers, "cpu", "cpu,cpuacct"):
                mount = root / "sys/fs/cgroup" / name
                if mount.is_dir():
                    quotas += [q for q in (_v1_quota(d) for d in _up_from(mount, path)) if q is not None]
                    break
    return min(quotas) if quotas else None


def _up_from(mount: Path, path: str) -> list:
    """``mount/path`` and each folder above it up to ``mount``; inside a
    container's cgroup namespace the path may not exist, then only ``mount``."""
    parts = [p for p in path.split("/") if p and p not in (".", "..")]
    folders = [mount.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]
    return [f for f in folders if f.is_dir()]


def _v2_quota(path: Path) -> Optional[float]:
    try:
        fields = path.read_text(encoding="utf8").split()
    except OSError:
        return None
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def _v1_quota(folder: Path) -> Optional[float]:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text(encoding="utf8"))
        period = int((folder / "cpu.cfs_period_us").read_text(encoding="utf8"))
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None


def _worker_thread_count() -> int:
    for name in (WORKER_THREADS_ENV, THREADS_ENV):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def _worker_threads_after_fork() -> None:
    global _threads_set_in
    _set_threads(1)
    _threads_set_in = os.getpid()


def _set_threads(threads: int) -> None:
    """Record the plan for this process and give it to torch if torch is loaded."""
    global _planned
    _planned = (os.getpid(), threads)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)

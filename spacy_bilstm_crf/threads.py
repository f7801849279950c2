"""The package's torch thread policy, in one place.

Importing the package changes nothing in the process: no thread count is
set and no fork hook is registered. The policy applies from the first time a
``crf_ner`` component runs torch in a process (``initialize``, ``update``,
``rehearse`` or ``predict``), through :func:`apply_thread_policy`:

- it registers, once per process, an at-fork hook that runs torch on one
  thread in a child forked from this process. ``nlp.pipe(texts,
  n_process=N)`` forks its workers on Linux, and torch's OpenMP thread pool
  does not survive ``fork``: a forked child that runs a parallel kernel hangs.
  One thread per worker also keeps N workers on N cores;
- in a multiprocessing child (a worker of ``nlp.pipe(n_process=N)``, also
  under the spawn start method) it sets torch to one thread, once.

The process's own thread count is left alone. A ``torch.set_num_threads``
call in the worker after the component's first run wins.
"""

import multiprocessing
import os
from typing import Optional

_fork_hook_registered = False
_threads_set_in: Optional[int] = None  # the pid of the child process already set up


def apply_thread_policy() -> None:
    """Apply the policy above; cheap after the first call in a process."""
    global _fork_hook_registered, _threads_set_in
    if not _fork_hook_registered:
        if hasattr(os, "register_at_fork"):  # not on Windows, which cannot fork
            os.register_at_fork(after_in_child=_one_thread_after_fork)
        _fork_hook_registered = True
    pid = os.getpid()
    if _threads_set_in != pid:
        if multiprocessing.parent_process() is not None:
            _one_thread()
        _threads_set_in = pid


def _one_thread_after_fork() -> None:
    global _threads_set_in
    _one_thread()
    _threads_set_in = os.getpid()


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)

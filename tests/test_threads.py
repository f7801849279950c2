"""The thread policy: the CPUs a process may use, the plan per pipeline, the setting."""

import io
from pathlib import Path

import pytest
import spacy
import torch
from spacy.language import Language

from spacy_bilstm_crf import threads
from spacy_bilstm_crf.annotate.run import _processes_for_cpus
from spacy_bilstm_crf.cli import main
from spacy_bilstm_crf.threads import (
    THREADS_ENV,
    WORKER_THREADS_ENV,
    configure_threads,
    has_transformer,
    thread_setting,
    usable_cpus,
)


@pytest.fixture(autouse=True)
def _restore_torch_threads(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv(WORKER_THREADS_ENV, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf8")


def _four_cpus(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})


def test_usable_cpus_follow_the_affinity_mask(monkeypatch, tmp_path):
    _four_cpus(monkeypatch)
    assert usable_cpus(tmp_path) == 4  # no /proc/self/cgroup under the root: no quota
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {3})
    assert usable_cpus(tmp_path) == 1


@pytest.mark.parametrize(
    "cpu_max, expected",
    [("max 100000", 4), ("200000 100000", 2), ("150000 100000", 1), ("50000 100000", 1), ("garbage", 4)],
)
def test_a_cgroup_v2_quota_caps_the_cpus(monkeypatch, tmp_path, cpu_max, expected):
    _four_cpus(monkeypatch)
    _write(tmp_path / "proc/self/cgroup", "0::/user.slice/job\n")
    _write(tmp_path / "sys/fs/cgroup/user.slice/job/cpu.max", cpu_max)
    assert usable_cpus(tmp_path) == expected


def test_the_quota_of_a_cgroup_above_counts_too(monkeypatch, tmp_path):
    _four_cpus(monkeypatch)
    _write(tmp_path / "proc/self/cgroup", "0::/a/b\n")
    _write(tmp_path / "sys/fs/cgroup/a/b/cpu.max", "max 100000")
    _write(tmp_path / "sys/fs/cgroup/a/cpu.max", "300000 100000")
    assert usable_cpus(tmp_path) == 3


def test_inside_a_cgroup_namespace_the_mount_root_holds_the_quota(monkeypatch, tmp_path):
    _four_cpus(monkeypatch)
    _write(tmp_path / "proc/self/cgroup", "0::/\n")
    _write(tmp_path / "sys/fs/cgroup/cpu.max", "200000 100000")
    assert usable_cpus(tmp_path) == 2


def test_a_cgroup_v1_quota_caps_the_cpus(monkeypatch, tmp_path):
    _four_cpus(monkeypatch)
    _write(tmp_path / "proc/self/cgroup", "12:memory:/docker/x\n4:cpu,cpuacct:/docker/x\n")
    _write(tmp_path / "sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us", "200000\n")
    _write(tmp_path / "sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_period_us", "100000\n")
    assert usable_cpus(tmp_path) == 2
    _write(tmp_path / "sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us", "-1\n")
    assert usable_cpus(tmp_path) == 4


def test_the_real_machine_has_at_least_one_usable_cpu():
    assert 1 <= usable_cpus() <= len(threads.os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_setting_is_an_error_that_names_the_variable(monkeypatch, value):
    monkeypatch.setenv(THREADS_ENV, value)
    with pytest.raises(ValueError, match=THREADS_ENV):
        thread_setting()


def test_a_pipeline_without_a_transformer_runs_on_one_thread(monkeypatch):
    _four_cpus(monkeypatch)
    torch.set_num_threads(2)
    nlp = spacy.blank("zh")
    assert configure_threads(nlp) == 1
    assert torch.get_num_threads() == 1


@Language.factory("fake_transformer_for_threads")
def _fake_transformer(nlp, name):
    return lambda doc: doc


def test_a_transformer_pipeline_shares_the_usable_cpus_among_its_processes(monkeypatch, tmp_path):
    _four_cpus(monkeypatch)
    monkeypatch.setattr(threads, "usable_cpus", lambda: 4)
    nlp = spacy.blank("en")
    nlp.add_pipe("fake_transformer_for_threads")
    assert has_transformer(nlp)
    assert configure_threads(nlp) == 4
    assert torch.get_num_threads() == 4
    torch.set_num_threads(1)
    assert configure_threads(nlp, n_process=3) == 1  # 4 // 3
    assert configure_threads(nlp, n_process=2) == 2
    assert threads.os.environ[WORKER_THREADS_ENV] == "2"  # for the workers
    assert threads._worker_thread_count() == 2
    assert torch.get_num_threads() == 1  # the main process only hands out texts


def test_a_number_or_keep_overrides_the_plan(monkeypatch):
    nlp = spacy.blank("zh")
    monkeypatch.setenv(THREADS_ENV, "3")
    assert configure_threads(nlp) == 3
    assert torch.get_num_threads() == 3
    monkeypatch.setenv(THREADS_ENV, "keep")
    torch.set_num_threads(2)
    assert configure_threads(nlp) is None
    assert torch.get_num_threads() == 2


def test_workers_take_a_number_from_the_setting_and_one_thread_otherwise(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "auto")
    assert threads._worker_thread_count() == 1
    monkeypatch.setenv(THREADS_ENV, "2")
    assert threads._worker_thread_count() == 2
    monkeypatch.setenv(WORKER_THREADS_ENV, "3")  # the plan wins
    assert threads._worker_thread_count() == 3


def test_the_command_line_rejects_a_bad_setting_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv(THREADS_ENV, "many")
    assert main(["predict", str(tmp_path / "no-such-model"), "text"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and THREADS_ENV in err and "'many'" in err


def test_annotate_runs_no_more_processes_than_usable_cpus(monkeypatch):
    monkeypatch.setattr(threads, "usable_cpus", lambda: 2)
    stream = io.StringIO()
    assert _processes_for_cpus(2, stream) == 2
    assert stream.getvalue() == ""
    assert _processes_for_cpus(5, stream) == 2
    assert stream.getvalue() == "annotate: --n-process 5 lowered to 2, the CPUs this process may use\n"

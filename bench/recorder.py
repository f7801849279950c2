"""One recorder for every training loop: words seen, time in update steps,
dev F1 checkpoints, the best checkpoint, and when to stop (``Budget``).

The spaCy trainer and the softmax trainer both call ``step`` after each
update; the recorder decides when to evaluate, keeps the learning curve and
says when the budget (minimum, patience, cap) ends training.
"""

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional

from .common import log, spread
from .specs import Budget


@dataclass
class Checkpoint:
    """Dev figures after ``words_seen`` training words and ``train_seconds``
    seconds spent in update steps (evaluation and saving excluded)."""

    words_seen: int
    step: int
    train_seconds: float
    dev_f1: float
    dev_precision: float
    dev_recall: float
    loss: float
    eval_seconds: float


@dataclass
class TrainingRecorder:
    """Feed it every update step; it evaluates on dev at the budget's points,
    calls ``save_best`` at each new best dev F1, and tells when to stop."""

    budget: Budget
    plan_steps: int
    evaluate: Callable[[], Dict[str, float]]
    save_best: Callable[[], None]
    name: str = ""
    words_seen: int = 0
    steps: int = 0
    train_seconds: float = 0.0
    curve: List[Checkpoint] = field(default_factory=list)
    stopped_by: Optional[str] = None
    _best: Optional[Checkpoint] = None
    _next_eval: int = 0
    _loss: float = 0.0
    _interval_words: int = 0
    _interval_seconds: float = 0.0
    _intervals: List[float] = field(default_factory=list)
    _step_seconds: List[float] = field(default_factory=list)
    _overhead_seconds: float = 0.0

    def __post_init__(self) -> None:
        self._next_eval = self.budget.eval_every

    def step(self, words: int, seconds: float, loss: float) -> bool:
        """Record one update step; return True when training should stop."""
        self.steps += 1
        self.words_seen += words
        self.train_seconds += seconds
        self._loss += loss
        self._interval_words += words
        self._interval_seconds += seconds
        self._step_seconds.append(seconds)
        last = self.steps >= self.plan_steps or self.words_seen >= self.budget.max_words
        if self.words_seen >= self._next_eval or last:
            while self._next_eval <= self.words_seen:
                self._next_eval += self.budget.eval_every
            self._checkpoint()
            if self._should_stop(last):
                return True
        return False

    def _checkpoint(self) -> None:
        start = time.perf_counter()
        dev = self.evaluate()
        eval_seconds = time.perf_counter() - start
        point = Checkpoint(
            words_seen=self.words_seen,
            step=self.steps,
            train_seconds=self.train_seconds,
            dev_f1=float(dev["f1"]),
            dev_precision=float(dev["precision"]),
            dev_recall=float(dev["recall"]),
            loss=self._loss,
            eval_seconds=eval_seconds,
        )
        self.curve.append(point)
        if self._interval_seconds > 0:
            self._intervals.append(self._interval_words / self._interval_seconds)
        self._loss, self._interval_words, self._interval_seconds = 0.0, 0, 0.0
        if self._best is None or point.dev_f1 > self._best.dev_f1:
            self._best = point
            save_start = time.perf_counter()
            self.save_best()
            self._overhead_seconds += time.perf_counter() - save_start
        self._overhead_seconds += eval_seconds
        log(
            f"{self.name}: {self.words_seen:,} words, {self.train_seconds:.0f}s training, "
            f"dev F1 {point.dev_f1:.4f} (best {self._best.dev_f1:.4f})"
        )

    def _should_stop(self, last: bool) -> bool:
        budget, best = self.budget, self._best
        if last:
            self.stopped_by = "budget" if budget.min_words == budget.max_words else "cap"
            return True
        if self.words_seen < budget.min_words or best is None:
            return False
        if self.words_seen - best.words_seen >= budget.patience * self.words_seen:
            self.stopped_by = "patience"
            return True
        return False

    @property
    def best(self) -> Checkpoint:
        if self._best is None:
            raise RuntimeError("no checkpoint yet")
        return self._best

    def result(self) -> Dict[str, Any]:
        """The training figures of a cell."""
        best = self.best
        return {
            "words_seen": self.words_seen,
            "steps": self.steps,
            "train_seconds": self.train_seconds,
            "train_words_per_s": self.words_seen / self.train_seconds if self.train_seconds else None,
            "train_words_per_s_intervals": spread(self._intervals),
            "step_seconds": {k: v for k, v in spread(self._step_seconds).items() if k != "values"},
            "eval_and_save_seconds": self._overhead_seconds,
            "stopped_by": self.stopped_by,
            "dev_f1_best": best.dev_f1,
            "dev_f1_final": self.curve[-1].dev_f1,
            "best": asdict(best),
            "learning_curve": [asdict(point) for point in self.curve],
            "budget": asdict(self.budget),
        }

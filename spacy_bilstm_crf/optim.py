"""Per-component learning-rate scaling on top of a shared Thinc optimizer."""

from typing import Any, Optional, Tuple

from thinc.api import Model, Optimizer
from thinc.types import FloatsXd


class LRScaledOptimizer:
    """Wraps an optimizer so that every call scales its learning rate.

    State (Adam moments, step counts, schedules) stays in the wrapped
    optimizer: parameters are keyed as before, and every other attribute is
    the wrapped optimizer's.
    """

    def __init__(self, optimizer: Optimizer, lr_scale: float) -> None:
        self.optimizer = optimizer
        self.lr_scale = lr_scale

    def __call__(
        self, key: Tuple[int, str], weights: FloatsXd, gradient: FloatsXd, *, lr_scale: float = 1.0
    ) -> Tuple[FloatsXd, FloatsXd]:
        return self.optimizer(key, weights, gradient, lr_scale=lr_scale * self.lr_scale)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)


def finish_update_scaled(model: Model, optimizer: Optimizer, lr_scale: float, unscaled: Optional[Model] = None) -> None:
    """Like ``model.finish_update(optimizer)``, with the learning rate scaled by
    ``lr_scale`` for every node except those of the subtree ``unscaled``."""
    skip = {node.id for node in unscaled.walk()} if unscaled is not None else set()
    if unscaled is not None:
        unscaled.finish_update(optimizer)
    scaled: Any = optimizer if lr_scale == 1.0 else LRScaledOptimizer(optimizer, lr_scale)
    nodes = [node for node in model.walk() if node.id not in skip]
    for node in nodes:
        for shim in node.shims:
            shim.finish_update(scaled)
    for node in nodes:
        for name in node.param_names:
            if node.has_grad(name):
                param, _ = scaled((node.id, name), node.get_param(name), node.get_grad(name))
                node.set_param(name, param)

"""An exponential moving average of a model's weights during training (``--ema``), as YOLOv5/v8
and detectron2's ``ModelEMA`` keep one: validated, and saved as best.pt, instead of the raw
weights, whose last steps are noisy.

After every optimizer step each floating tensor of the model's state (weights and BatchNorm
statistics) is folded in: ``ema = d * ema + (1 - d) * weights``. The decay ramps up from 0
(``d = d_max * (1 - exp(-updates / window))``), so early weights, far from the optimum, are
soon forgotten. The averaging window is fitted to the run: 5% of its iterations, between 10 and
2,000 steps (``d_max = 1 - 1 / window``). Ultralytics' fixed 0.9999 (a 10,000-step window) is
made for runs of 100,000 steps; a CPU run of 2,000 steps would average weights from its first
minutes. Integer tensors (BatchNorm's batch count) are copied as they are.
"""

from __future__ import annotations

import copy
import math

import torch

MIN_WINDOW, MAX_WINDOW, WINDOW_SHARE = 10, 2000, 0.05


def averaging_window(total_iterations: int) -> float:
    """Steps the average spans at full decay, for a run of ``total_iterations``."""
    return min(MAX_WINDOW, max(MIN_WINDOW, WINDOW_SHARE * total_iterations))


class ModelEMA:
    """The averaged copy (``module``, in eval mode, no gradients) of a model being trained.

    Args:
        model: the model (not wrapped in DistributedDataParallel).
        total_iterations: the run's length in optimizer steps (sets the window).
        updates: steps already folded in (a resumed run).
    """

    def __init__(self, model: torch.nn.Module, total_iterations: int, updates: int = 0):
        self.module = copy.deepcopy(model).eval()
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)
        self.updates = updates
        self.set_length(total_iterations)

    def set_length(self, total_iterations: int) -> None:
        """Fit the window to a run of ``total_iterations`` (a run extended with --epochs)."""
        self.window = averaging_window(total_iterations)

    def decay(self) -> float:
        return (1 - 1 / self.window) * (1 - math.exp(-self.updates / self.window))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Fold in ``model``'s current state (call after each optimizer step)."""
        self.updates += 1
        d = self.decay()
        current = model.state_dict()
        for name, average in self.module.state_dict().items():
            value = current[name].detach()
            if average.is_floating_point():
                average.mul_(d).add_(value.to(average.dtype), alpha=1 - d)
            else:
                average.copy_(value)

    def state_dict(self) -> dict:
        """What last.pt keeps of it: the steps folded in and the averaged state."""
        return {"updates": self.updates,
                "state_dict": {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}}

    def load_state_dict(self, saved: dict) -> None:
        self.updates = int(saved["updates"])
        state = {k: v.float() if v.is_floating_point() else v for k, v in saved["state_dict"].items()}
        self.module.load_state_dict(state)

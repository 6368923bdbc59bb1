"""Learning-rate schedules: ``Schedule(...)(step) -> lr`` for steps counted from 0.

Each takes an optional linear warmup: for ``step < warmup_steps`` the rate climbs as
``lr · (step + 1) / warmup_steps``; the decay then runs on ``step − warmup_steps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

SCHEDULES = ("constant", "step", "exponential", "cosine")


@dataclass(frozen=True)
class Schedule:
    """``constant``: lr. ``step``: lr · gamma^⌊s / step_size⌋. ``exponential``: lr · gammaˢ.
    ``cosine``: min_lr + (lr − min_lr) · ½(1 + cos(π · min(s, decay_steps) / decay_steps))."""

    name: str = "constant"
    lr: float = 0.01
    warmup_steps: int = 0
    gamma: float = 0.1
    step_size: int = 1000
    decay_steps: int = 1000
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(
                f"unknown lr schedule {self.name!r}; expected one of: {', '.join(SCHEDULES)}"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0; got {self.lr!r}")
        if not (math.isfinite(self.gamma) and 0 < self.gamma <= 1):
            raise ValueError(f"gamma must lie in (0, 1]; got {self.gamma!r}")
        for field_name in ("warmup_steps", "step_size", "decay_steps"):
            value = getattr(self, field_name)
            low = 0 if field_name == "warmup_steps" else 1
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{field_name} must be an integer >= {low}; got {value!r}")
        if not (math.isfinite(self.min_lr) and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"min_lr must lie in [0, lr={self.lr:g}]; got {self.min_lr!r}")

    def __call__(self, step: int) -> float:
        if step < 0:
            raise ValueError(f"step must be >= 0; got {step}")
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        s = step - self.warmup_steps
        if self.name == "step":
            return self.lr * self.gamma ** (s // self.step_size)
        if self.name == "exponential":
            return self.lr * self.gamma**s
        if self.name == "cosine":
            progress = min(s, self.decay_steps) / self.decay_steps
            return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr

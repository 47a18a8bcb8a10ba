"""Learning-rate schedules, one per recipe, both with a linear warmup (GPT-1 §4.1):

- ``cosine_lr_at`` (pretraining): then cosine decay to a floor; GPT-2 and nanoGPT keep it.
- ``linear_lr_at`` (fine-tuning): then linear decay to 0 ("Fine-tuning details").

Pure functions of the step, so a resumed run needs nothing but the step to continue the schedule exactly.
"""
from __future__ import annotations

import math


def cosine_lr_at(step: int, *, max_lr: float, min_lr: float, warmup_steps: int, decay_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based).

    Rises linearly from ``max_lr / warmup_steps`` (step 0) to ``max_lr`` (step ``warmup_steps - 1``), then follows
    half a cosine from ``max_lr`` down to ``min_lr``, reached at step ``decay_steps``, and stays there.
    GPT-1: warmup 2,000 steps to 2.5e-4, cosine "annealed to 0".
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if not 0 <= min_lr <= max_lr:
        raise ValueError(f"need 0 <= min_lr <= max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if warmup_steps < 0 or decay_steps < warmup_steps:
        raise ValueError(f"need 0 <= warmup_steps <= decay_steps, got warmup_steps={warmup_steps}, "
                         f"decay_steps={decay_steps}: lower warmup_steps or train for more steps")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= decay_steps:
        return min_lr
    progress = (step - warmup_steps) / max(decay_steps - warmup_steps, 1)  # 0 → 1 over the decay
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def linear_lr_at(step: int, *, max_lr: float, warmup_steps: int, total_steps: int) -> float:
    """Linear warmup to ``max_lr`` over ``warmup_steps``, then linear decay to 0 at ``total_steps`` (GPT-1)."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    return max_lr * max(0.0, (total_steps - step) / max(total_steps - warmup_steps, 1))

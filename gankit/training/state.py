"""The training loop's explicit state: everything besides models, optimizers and data position that a resume needs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class TrainState:
    step: int = 0  # generator updates done
    lr_scale: float = 1.0  # learning-rate factor left by NaN rollbacks
    rollbacks: int = 0  # NaN rollbacks so far
    best_value: float | None = None  # the best validation score so far (what the `best` checkpoint holds)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, step: int, d: dict[str, Any]) -> "TrainState":
        """From a checkpoint's state.json (older checkpoints lack the newer keys: their defaults apply)."""
        best = d.get("best_value")
        return cls(
            step=int(step),
            lr_scale=float(d.get("lr_scale", 1.0)),
            rollbacks=int(d.get("rollbacks", 0)),
            best_value=None if best is None else float(best),
        )

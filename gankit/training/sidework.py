"""When the work beside the training step happens, and keeping it a small share of a run's wall time.

All of it is about *when*, never about *what*: :meth:`Paces.due` decides, from the step number alone, which side work
a step owes (the one place that reads train.log_every, sample_every, eval_every and checkpoint_every);
:class:`Throttle` lets a piece of side work run only when enough wall time has passed since it last ran;
:class:`SideClock` measures the wall time spent in the training step and in each kind of side work (it is written to
summary.json, so every run measures its own share); :class:`SideWork` does the work.

Time-based decisions only ever skip drawing, scoring or plotting; they never touch the models, optimizers, random
streams or data order, so the trained weights (and an exact resume) do not depend on how fast the machine is.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..config.schema import TrainConfig
from . import distributed as ddp

PLOT_SECONDS = 60.0  # losses.png is redrawn at most this often (a person does not look more often)


@dataclass(frozen=True)
class Due:
    """What one step owes besides itself. ``preview`` and ``plots`` run only if their wall-time pace also allows
    (:class:`Throttle`, checked when they would run); everything else is decided by the step number alone."""

    check_outputs: bool  # the step's scalars are checked for NaN/Inf
    check_weights: bool  # every weight is checked too (a checkpoint is what rollbacks and resumes trust)
    log: bool  # a metrics.jsonl row
    preview: bool  # the preview grids
    validate: bool  # validation scores (train.eval_every)
    checkpoint: bool  # a numbered checkpoint
    plots: bool  # losses.png


@dataclass(frozen=True)
class Paces:
    """Every how many steps each kind of side work comes (from ``train.*``)."""

    log_every: int
    sample_every: int  # previews; derived from the epoch length when train.sample_every is 0
    eval_every: int  # 0: never
    checkpoint_every: int
    check_every_step: bool  # the step's scalars checked at every step, not only at log steps

    @classmethod
    def of(cls, t: TrainConfig, batches_per_epoch: int, device_type: str) -> "Paces":
        # A finiteness check reads the scalars on the host: free on the CPU, a sync on accelerators (so there only
        # at log steps, where the row reads them anyway).
        return cls(
            log_every=t.log_every,
            sample_every=t.sample_every or max(1, batches_per_epoch // t.d_steps),
            eval_every=t.eval_every,
            checkpoint_every=t.checkpoint_every,
            check_every_step=device_type == "cpu",
        )

    def due(self, step: int) -> Due:
        """The side work owed after step ``step`` (1 for the first step; the last step of a run is this too: the
        end of a run adds what is missing, :meth:`gankit.training.loop.TrainingLoop.finish`)."""
        checkpoint = step % self.checkpoint_every == 0
        return Due(
            check_outputs=self.check_every_step or step % self.log_every == 0,
            check_weights=checkpoint,
            log=step % self.log_every == 0 or step == 1,
            preview=step % self.sample_every == 0,
            validate=bool(self.eval_every) and step % self.eval_every == 0,
            checkpoint=checkpoint,
            plots=checkpoint,
        )


class Throttle:
    """``ready()`` is true when at least ``seconds`` of wall time have passed since the last ``mark()`` (and before
    the first one). ``seconds <= 0`` is always ready."""

    def __init__(self, seconds: float, clock=time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self.last: float | None = None

    def ready(self) -> bool:
        return self.seconds <= 0 or self.last is None or self.clock() - self.last >= self.seconds

    def mark(self) -> None:
        self.last = self.clock()


class SideClock:
    """Wall time of a run split into the training step and named kinds of side work.

    ``with clock.step(): task.step(...)`` and ``with clock.side("previews"): ...``; :meth:`summary` gives
    ``step_seconds``, ``side_seconds`` (everything that is not the step: the named parts, logging, the progress bar)
    and ``side_share``. On an accelerator the step is queued asynchronously, so part of it is paid in the next host
    sync (usually a log step or a preview) and shows as side work; on the CPU the split is exact.
    """

    def __init__(self, clock=time.perf_counter) -> None:
        self.clock = clock
        self.start = clock()
        self.step_seconds = 0.0
        self.first_step: float | None = None  # the first step's seconds (with train.compile: compiling included)
        self.parts: dict[str, float] = defaultdict(float)

    @contextmanager
    def step(self) -> Iterator[None]:
        t0 = self.clock()
        try:
            yield
        finally:
            dt = self.clock() - t0
            self.step_seconds += dt
            if self.first_step is None:
                self.first_step = dt

    @contextmanager
    def side(self, name: str) -> Iterator[None]:
        t0 = self.clock()
        try:
            yield
        finally:
            self.parts[name] += self.clock() - t0

    def summary(self) -> dict[str, object]:
        total = self.clock() - self.start
        side = max(0.0, total - self.step_seconds)
        return {
            "wall_seconds": round(total, 3),
            "step_seconds": round(self.step_seconds, 3),
            "side_seconds": round(side, 3),
            "side_share": round(side / total, 4) if total > 0 else 0.0,
            "first_step_seconds": None if self.first_step is None else round(self.first_step, 3),
            "side_parts": {k: round(v, 3) for k, v in sorted(self.parts.items())},
        }


class SideWork:
    """The work beside the training step — checkpoints, validation, previews, plots — each timed by a SideClock,
    previews and plots paced by wall time. Only what is shown depends on the pacing; what trains never does."""

    def __init__(
        self,
        *,
        task: Any,
        spec: Any,
        ckpt: Any,
        state: Any,
        best: Any,
        shows: Any,
        progress: Callable[[], float],
        sample_every: int,
        eval_every: int,
        preview_seconds: float,
        seed: int = 0,
        pace_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.task, self.spec, self.ckpt, self.state, self.best, self.shows = task, spec, ckpt, state, best, shows
        self.progress, self.eval_every, self.seed = progress, eval_every, seed
        self.clock = SideClock()  # wall time in the step vs side work, for summary.json
        # Previews (when train.sample_every is not set) at most every train.preview_seconds; losses.png every minute.
        # Under torchrun, validation is a collective, so previews follow steps, which every rank agrees on.
        # The pace follows the budget's clock (train.clock), so a CPU budget spends the same share on side work
        # whatever the load.
        self.preview_pace = Throttle(0 if sample_every or ddp.world_size() > 1 else preview_seconds, pace_clock)
        self.plot_pace = Throttle(PLOT_SECONDS, pace_clock)
        self.last_preview = -1
        self.saved: tuple[int, str] | None = None  # (step, name) of the newest numbered checkpoint written
        self.best_due = False  # a new best score whose checkpoint is not written yet
        self.holding = False
        self.last_scores: tuple[int, dict[str, float]] = (-1, {})  # (step, scores) of the newest validation

    def save(self, name: str, move_latest: bool = True) -> None:
        self.state.best_value = self.best.value
        with self.clock.side("checkpoints"):
            # Every rank brings derived tensors up to date first: rank 0 may already have done so for a preview
            # (the EMA's standing BatchNorm statistics), and the check below compares them.
            self.task.settle()
            # every rank holds what rank 0 is about to write
            ddp.check_same(self.task.modules, f"checkpoint {name}", self.task.extra_state() if ddp.active() else None)
            self.ckpt.save(name, self.state.to_json(), move_latest)  # rank 0 only
            ddp.barrier()
        if name != "best":
            self.saved = (self.state.step, name)
        ddp.reseed(self.seed, self.state.step)

    def alias(self, name: str, src: str, move_latest: bool = True, copy: bool = False) -> None:
        with self.clock.side("checkpoints"):
            self.ckpt.alias(name, src, move_latest, copy)  # rank 0 only
            ddp.barrier()

    def validate(self) -> dict[str, float]:
        """Score the model on validation data now (logged, `best` kept); returns the scores ({} when there are none)."""
        with self.clock.side("validation"):
            scores = ddp.from_main(self.task.validate, "validation scores")
            if scores:
                self.shows.row(self.state.step, self.progress(), {k: round(v, 6) for k, v in scores.items()})
        self.last_scores = (self.state.step, scores or {})
        if self.best.update(scores):
            self.best_due = True
            if not self.holding:
                self.save_best()
        return scores or {}

    def save_best(self) -> None:
        """Checkpoint ``best`` for a new best score: a hard-linked twin of this step's numbered checkpoint when one
        was written after the score (same state, and its state.json already holds the new best value), else a write."""
        if not self.best_due:
            return
        self.best_due = False
        if self.saved is not None and self.saved[0] == self.state.step:
            self.alias("best", self.saved[1], move_latest=False)
        else:
            self.save("best", move_latest=False)

    @contextmanager
    def best_after(self) -> Iterator[None]:
        """A step's validation, then its numbered checkpoint: ``best`` is settled at the end of the block, as a link
        to that checkpoint instead of a second write of the same state (at step 0, at the end of a run, and at
        checkpoint steps that also validate)."""
        self.holding = True
        try:
            yield
        except BaseException:
            self.holding = False
            raise
        self.holding = False
        self.save_best()

    def previews(self) -> None:
        if ddp.is_main():
            with self.clock.side("previews"):
                self.shows.previews(self.state.step, self.task.preview())
        self.preview_pace.mark()
        self.last_preview = self.state.step
        if self.spec.validate_with_previews and not self.eval_every:  # cheap scores go with every grid
            self.validate()

    def plots(self, gif: bool) -> None:
        with self.clock.side("plots"):
            self.shows.plots(gif)
        self.plot_pace.mark()

"""Issue 13: sample quality against training wall-clock minutes, scored by gankit's classifier FD.

Protocol: MNIST's test split (10,000 images). ``holdout_split`` (seed 0, the images ``data.holdout=2000`` keeps out)
sets 2,000 aside; the other 8,000 train the GAN (or a fixed random subset of them: ``--train-images``) and the judge,
a domain classifier (gankit's sharpness-sensitive v2 features) trained on those 8,000 at the run's image size. The
2,000 held-out images are cut at random (seed 1) into a 1,000-image reference and a 1,000-image "real held-out" row
(the real-vs-real floor at this sample size). At each wall-clock point the run's G (its EMA when it has one) draws
1,000 samples (seed 1) and their FD against the reference is recorded.

The training clock: the run trains in segments (then ``--resume``, which is bit-exact), and scoring happens between
segments, so the minutes on the x axis are training minutes only, not scoring or start-up time. Two clocks:

- ``--clock wall`` (default): each segment is ``train.max_minutes`` of wall time (what ``run.summary()`` reports).
  On a shared machine a wall minute buys fewer steps when other jobs run.
- ``--clock cpu``: minutes of this process's CPU time (``time.process_time()`` around training only; with
  ``--threads 1`` one CPU-minute is one core-minute). Each segment is a step budget sized from the CPU seconds per
  step measured so far, so a point lands within a few seconds of its mark. Other jobs on the machine then change
  how long a run takes, not how many steps its CPU minutes buy (up to cache and memory-bandwidth sharing), which
  makes recipes measured at different times comparable.

Every point's 1,000 samples (uint8) are saved beside the JSON (``NAME.samples.npz``), so ``--rescore DIR`` can score
old runs again with another judge without training again.

After the last point: gankit's ``evaluate`` (classes hit, label KL, nearest-training-neighbour pixel distance,
recall, coverage) for the samples and the real row; for conditional runs, the share of 200 samples per requested
class that the judge assigns to that class.

    python benchmarks/time_to_quality.py --recipe default --minutes 10 --every 1 \\
        --data-dir ../shared/data/mnist --threads 1 --out-dir benchmarks/results/ttq
    python benchmarks/time_to_quality.py --plot benchmarks/results/ttq --png benchmarks/results/ttq_fd_minutes.png

Recipes (``--recipe``): the names in ``RECIPES`` below; ``--set key=value`` changes one (e.g. for a small sweep).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gankit.config import DataConfig
from gankit.config.layering import resolve, resume_config
from gankit.data import load_dataset
from gankit.data.base import ImageData, to_uint8
from gankit.data.splits import holdout_split
from gankit.metrics import build_extractor, fd, score_samples
from gankit.tasks import load
from gankit.training.loop import train
from gankit.training.rundir import load_run_config

CONFIGS = Path(__file__).resolve().parent.parent / "gankit" / "configs"
# name -> (config file or None, dotted overrides). "default" is `gankit train --data mnist`: the conditional recipe
# since the third round (the second round's default+... runs were the unconditional one, "recommended" below).
RECIPES: dict[str, tuple[str | None, dict[str, Any]]] = {
    "default": (None, {}),
    "report-004": ("reports/004-dcgan-mnist.yaml", {}),
    "hinge-sn": ("hinge-sn-mnist.yaml", {}),
    "wgan-gp": ("wgan-gp-mnist.yaml", {}),
    "default+diffaugment": (None, {"train.augment": "color,translation,cutout"}),
    "default+ada": (None, {"train.augment": "ada"}),
    "recommended": ("recommended/mnist.yaml", {}),
    "recommended-conditional": ("recommended/mnist-conditional.yaml", {}),
    "conditional-default": (None, {"model.num_classes": 10}),
}
N = 1000  # samples per point, reference images, real-row images
PER_CLASS = 200


def parse_set(items: list[str]) -> dict[str, Any]:
    from gankit.config import parse_set as parse_one  # the CLI's --set parser (4e-4 is a number there, as users expect)

    return dict(parse_one(item) for item in items)


def recipe_config(name: str, extra: dict[str, Any], data_dir: str, minutes: float):
    file, over = RECIPES[name]
    over = {
        **over,
        **extra,
        "data.name": "mnist",
        "data.dir": data_dir,
        "data.split": "test",
        "data.holdout": 0,
        "data.limit": 0,
        "train.max_minutes": minutes,
        "train.epochs": 0,
        "train.steps": 0,
        "train.eval_every": 0,
        "train.progress": False,
        "train.sample_every": 10**9,
    }
    return resolve(file=CONFIGS / file if file else None, overrides=over)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipe", choices=sorted(RECIPES))
    ap.add_argument("--name", help="name of the result (default: the recipe, plus -nN for --train-images)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--minutes", type=float, default=10.0, help="training minutes (the issue's protocol: 10)")
    ap.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="what a training minute is: wall-clock, or this process's CPU time (see the docstring)",
    )
    ap.add_argument("--every", type=float, default=1.0, help="training minutes between FD points")
    ap.add_argument("--points", help="comma-separated training minutes to score at instead of --every (e.g. 0.5,1,2,3)")
    ap.add_argument("--train-images", type=int, default=8000, help="a fixed random subset of the 8,000 (500, 2000)")
    ap.add_argument("--data-dir", default="../shared/data/mnist")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out-dir", default="benchmarks/results/ttq")
    ap.add_argument("--runs", default="runs/ttq")
    ap.add_argument("--plot", metavar="DIR", help="only draw the PNG from DIR/*.json")
    ap.add_argument("--png", default="benchmarks/results/ttq_fd_minutes.png")
    ap.add_argument("--xmax", type=float, default=20.0)
    ap.add_argument("--only", help="with --plot: comma-separated run names to draw (default: the unconditional runs)")
    ap.add_argument("--table", metavar="DIR", help="only print Markdown tables of DIR/*.json")
    ap.add_argument("--rescore", metavar="DIR", help="only score DIR/*.json's saved samples again with today's judge")
    args = ap.parse_args()
    if args.plot:
        plot(
            sorted(Path(args.plot).glob("*.json")),
            Path(args.png),
            args.xmax,
            args.only.split(",") if args.only else None,
        )
        return 0
    if args.table:
        tables(sorted(Path(args.table).glob("*.json")))
        return 0
    if args.rescore:
        for f in sorted(Path(args.rescore).glob("*.json")):
            rescore(f, args.data_dir)
        return 0
    if not args.recipe:
        ap.error("--recipe is required (or --plot)")
    torch.set_num_threads(args.threads)
    extra = {**parse_set(args.set), "train.threads": args.threads}
    name = args.name or (args.recipe + (f"-n{args.train_images}" if args.train_images != 8000 else ""))
    marks = (
        [float(m) for m in args.points.split(",")]
        if args.points
        else [args.every * (i + 1) for i in range(int(args.minutes / args.every + 1e-9))]
    )
    marks = sorted({m for m in marks if m < args.minutes} | {args.minutes})
    cfg = recipe_config(args.recipe, extra, args.data_dir, marks[0])
    size = cfg.data.image_size

    judge = Judge(args.data_dir, size, args.train_images)
    print(
        f"[{name}] judge {judge.ext.identity} ({judge.ext.dim}-d, accuracy {judge.ext.accuracy:.3f}, "
        f"{judge.seconds:.0f} s); real held-out FD {judge.real_fd:.3g}",
        flush=True,
    )

    run_dir = Path(args.runs) / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    points: list[dict[str, Any]] = []
    samples: dict[str, np.ndarray] = {}
    clock = Clock(args.clock, cfg, run_dir, judge.train_data)
    for mark in marks:
        if not clock.advance_to(mark * 60):
            continue
        g = load(run_dir)
        x = to_uint8(g.sample(N, seed=1))
        samples[f"step{clock.step}"] = x.numpy()
        point = {"minutes": round(clock.trained_s / 60, 3), "step": clock.step, "fd": judge.fd(x)}
        points.append(point)
        print(f"[{name}] {point}", flush=True)

    g = load(run_dir)
    labels = g.labels(N)
    if g.num_classes:
        for k in range(g.num_classes):
            samples[f"class{k}"] = to_uint8(g.sample(PER_CLASS, seed=10 + k, class_id=k)).numpy()
        samples["labels"] = labels.numpy()
    out = {
        "name": name,
        "recipe": args.recipe,
        "set": extra,
        "date": date.today().isoformat(),
        "machine": cpu_model(),
        "load": uptime(),
        "threads": args.threads,
        "clock": args.clock,
        "train_images": len(judge.train_data),
        "image_size": size,
        "minutes": args.minutes,
        "n": N,
        "points": points,
        "num_classes": g.num_classes,
        "config": load_run_config(run_dir).to_dict(),
    }
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    np.savez_compressed(Path(args.out_dir) / f"{name}.samples.npz", **samples)
    out.update(judge.score_run(out, samples))
    (Path(args.out_dir) / f"{name}.json").write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(f"[{name}] final {json.dumps(out['final'], default=float)}")
    print(f"[{name}] real  {json.dumps(out['real_row'], default=float)}")
    if out["per_class_accuracy"]:
        print(
            f"[{name}] per class {out['per_class_accuracy']} mean {np.mean(list(out['per_class_accuracy'].values())):.4f}"
        )
    return 0


class Judge:
    """The held-out split, the reference, the real row and the classifier that scores samples (see the docstring)."""

    def __init__(self, data_dir: str, size: int, train_images: int, data: DataConfig | None = None, n: int = N) -> None:
        """``data``: another labelled data set than MNIST's test split (a class-folder set, ``data.split=all``; its
        own ``image_size`` then applies, not ``size``); the runs must then have trained with ``data.holdout=2n``,
        which keeps out the same images as the judge's."""
        data = data or DataConfig(name="mnist", dir=data_dir, split="test", image_size=size)
        full = load_dataset(data)
        part, held = holdout_split(full, 2 * n)
        perm = torch.randperm(len(held), generator=torch.Generator().manual_seed(1))
        self.ref, self.real = held.subset(perm[:n]), held.subset(perm[n:])
        self.train_data = part
        if 0 < train_images < len(part):  # 0: all
            pick = torch.randperm(len(part), generator=torch.Generator().manual_seed(2))[:train_images]
            self.train_data = part.subset(pick.sort().values)
        t0 = time.perf_counter()
        self.ext = build_extractor("classifier", part)  # all the images outside the holdout, whatever the GAN trains on
        self.judge_images = len(part)
        self.seconds = time.perf_counter() - t0
        self.f_ref = self.ext(self.ref.images)[0]
        self.real_fd = fd(self.ext(self.real.images)[0], self.f_ref)

    def fd(self, x: torch.Tensor) -> float:
        return fd(self.ext(x)[0], self.f_ref)

    def score_run(self, run: dict[str, Any], samples: dict[str, np.ndarray]) -> dict[str, Any]:
        """Everything in a result that depends on the judge, from the saved samples."""
        for p in run["points"]:
            p["fd"] = self.fd(torch.from_numpy(samples[f"step{p['step']}"]))
        x = torch.from_numpy(samples[f"step{run['points'][-1]['step']}"])
        labels = torch.from_numpy(samples["labels"]) if "labels" in samples else None
        final = {
            k: v
            for k, v in score_samples(
                x, self.ref, self.train_data, extractor=self.ext, sample_labels=labels, parzen=False, progress=False
            ).items()
            if k in KEEP
        }
        real_eval = {
            k: v
            for k, v in score_samples(
                self.real.images, self.ref, self.train_data, extractor=self.ext, parzen=False, progress=False
            ).items()
            if k in KEEP
        }
        per_class = real_per_class = None
        if run.get("num_classes"):
            per_class = {}
            for k in range(run["num_classes"]):
                _, probs = self.ext(torch.from_numpy(samples[f"class{k}"]))
                per_class[str(k)] = float((probs.argmax(1) == k).mean())
            real_per_class = judge_on_real(self.ext, self.real)
        return {
            "judge": {
                **self.ext.info(),
                "accuracy": self.ext.accuracy,
                "images": self.judge_images,
                "seconds": self.seconds,
            },
            "real_held_out_fd": self.real_fd,
            "final": final,
            "real_row": real_eval,
            "per_class_accuracy": per_class,
            "judge_per_class_on_real": real_per_class,
        }


class Clock:
    """Trains ``run_dir`` in segments up to a mark of training seconds, on the wall clock or on CPU time."""

    PROBE_STEPS = 60  # the CPU clock's first segment: enough steps to measure seconds per step

    def __init__(self, kind: str, cfg, run_dir: Path, data: ImageData) -> None:
        self.kind, self.cfg, self.run_dir, self.data = kind, cfg, run_dir, data
        self.trained_s = 0.0
        self.step = 0

    def _segment(self, budget: dict[str, Any]) -> None:
        budget = {"train.steps": 0, "train.epochs": 0, "train.max_minutes": 0, **budget}  # only this budget counts
        cpu0 = time.process_time()
        if self.step == 0 and not (self.run_dir / "config.yaml").exists():
            run = train(self.cfg.replace(**budget), out=self.run_dir, data=self.data)
        else:
            c = resume_config(load_run_config(self.run_dir).to_dict(), budget)
            run = train(c, resume=self.run_dir, data=self.data)
        if self.kind == "cpu":
            self.trained_s += time.process_time() - cpu0
        else:
            self.trained_s += json.loads((self.run_dir / "summary.json").read_text())["seconds"]
        self.step = run.step

    def advance_to(self, seconds: float) -> bool:
        """Train until ``seconds`` of training time; False when already there."""
        if seconds - self.trained_s < 1:
            return False
        if self.kind == "wall":
            self._segment({"train.max_minutes": (seconds - self.trained_s) / 60})
            return True
        while seconds - self.trained_s >= 1:
            if self.step == 0:
                steps = self.PROBE_STEPS
            else:
                per_step = self.trained_s / self.step
                steps = self.step + max(1, round((seconds - self.trained_s) / per_step))
            self._segment({"train.steps": steps})
            if self.step and abs(seconds - self.trained_s) < 0.02 * seconds:
                break
        return True


def rescore(path: Path, data_dir: str) -> None:
    """Score a saved result's samples again with today's judge and rewrite its JSON."""
    run = json.loads(path.read_text())
    npz = path.with_name(path.name[: -len(".json")] + ".samples.npz")
    if not npz.is_file():
        print(f"{path}: no saved samples ({npz.name}); skipped")
        return
    with np.load(npz) as f:
        samples = {k: f[k] for k in f.files}
    judge = Judge(data_dir, run["image_size"], run["train_images"])
    old = run["points"][-1]["fd"]
    run.update(judge.score_run(run, samples))
    run["rescored"] = date.today().isoformat()
    path.write_text(json.dumps(run, indent=2, default=float) + "\n")
    print(f"{path.name}: final FD {old:.3g} -> {run['points'][-1]['fd']:.3g} (judge accuracy {judge.ext.accuracy:.3f})")


def judge_on_real(ext, real: ImageData) -> dict[str, float]:
    """The judge's own accuracy per class on real held-out images: the ceiling of what it can confirm in samples."""
    pred = ext(real.images)[1].argmax(1)
    labels = real.labels.numpy()
    return {str(k): float((pred[labels == k] == k).mean()) for k in sorted(set(labels.tolist()))}


KEEP = {
    "fd",
    "recall",
    "coverage",
    "precision",
    "classes_hit",
    "label_kl_uniform",
    "label_accuracy",
    "nn_pixel_samples",
    "nn_pixel_real",
}


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")
    except OSError:
        return platform.processor()


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def tables(files: list[Path]) -> None:
    """The rounds' tables (docs/notes/time-to-quality-round-*.md): every run's FD at each point, its end-of-run
    checks, and per-class accuracy."""
    runs = [json.loads(f.read_text()) for f in files]
    print(
        "| run | px | train images | steps | FD at each point (minutes: FD) | FD / real row | classes hit | "
        "KL(labels‖uniform) | NN dist. samples / real | recall |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in sorted(runs, key=lambda r: (r["train_images"], r["name"])):
        f, pts = r["final"], r["points"]
        curve = ", ".join(f"{p['minutes']:.1f}: {p['fd']:.3g}" for p in pts)
        print(
            f"| {r['name']} | {r['image_size']} | {r['train_images']:,} | {pts[-1]['step']:,} | {curve} | "
            f"{pts[-1]['fd'] / r['real_held_out_fd']:.3g} | {f['classes_hit']} | {f['label_kl_uniform']:.3f} | "
            f"{f['nn_pixel_samples']:.2f} / {f['nn_pixel_real']:.2f} | {f['recall']:.3f} |"
        )
    for r in runs:
        pc = r.get("per_class_accuracy")
        if pc:
            print(f"\n{r['name']}: requested class found by the judge")
            print("| " + " | ".join(pc) + " | overall |")
            print("|" + "---|" * (len(pc) + 1))
            print("| " + " | ".join(f"{v:.0%}" for v in pc.values()) + f" | {np.mean(list(pc.values())):.1%} |")
            rc = r.get("judge_per_class_on_real")
            if rc:
                print(
                    "| " + " | ".join(f"{v:.0%}" for v in rc.values()) + f" | {np.mean(list(rc.values())):.1%} | "
                    "(the judge on real held-out images)"
                )


def plot(files: list[Path], png: Path, xmax: float, only: list[str] | None = None) -> None:
    """FD against minutes and steps. Without ``only``: the 8,000-image unconditional runs; with it: those names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    floors = {}
    clocks = set()
    sizes: set[int] = set()  # training images of the runs drawn, for the title
    for f in files:
        r = json.loads(f.read_text())
        if only is not None:
            if r["name"] not in only:
                continue
        elif r["train_images"] != 8000 or r.get("per_class_accuracy"):
            continue  # the default PNG is the 8,000-image unconditional comparison
        pts = r["points"]
        label = f"{r['name']} ({r['image_size']}px, {pts[-1]['step']} steps)"
        colour = plt.get_cmap("tab20")(len(ax.lines) % 20)  # more runs than tab10's colours
        (line,) = ax.plot([p["minutes"] for p in pts], [p["fd"] for p in pts], marker="o", label=label, color=colour)
        # Minutes depend on the machine's load while the run trained; steps do not: the right panel separates the two.
        ax2.plot([p["step"] for p in pts], [p["fd"] for p in pts], marker="o", color=line.get_color(), label=label)
        floors[r["image_size"]] = r["real_held_out_fd"]
        clocks.add(r.get("clock", "wall"))
        sizes.add(r["train_images"])
    minutes = (
        "training CPU minutes (1 thread; scoring excluded)"
        if clocks == {"cpu"}
        else "training minutes (1 thread, shared 2-core CPU; scoring excluded)"
    )
    for a, xlabel in ((ax, minutes), (ax2, "generator steps")):
        for v in floors.values():
            a.axhline(v, color="grey", ls="--", lw=0.8)
        if floors:
            a.text(
                a.get_xlim()[1] if a is ax2 else xmax,
                max(floors.values()),
                "real held-out: " + ", ".join(f"{v:.3g} ({size}px)" for size, v in sorted(floors.items())),
                ha="right",
                va="bottom",
                fontsize=8,
                color="grey",
            )
        a.set_yscale("log")
        a.set_xlabel(xlabel)
        a.grid(alpha=0.3)
    ax.set_xlim(0, xmax)
    ax.set_ylabel("FD (gankit classifier features, 1,000 samples vs 1,000 held-out)")
    images = " / ".join(f"{n:,}" for n in sorted(sizes))
    ax.set_title(
        f"MNIST, {images} training images: FD against training " + ("CPU " if clocks == {"cpu"} else "") + "minutes",
        fontsize=10,
    )
    ax2.set_title("the same points against generator steps")
    ax2.legend(fontsize=7)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(png, dpi=110)
    print(f"wrote {png}")


if __name__ == "__main__":
    sys.exit(main())

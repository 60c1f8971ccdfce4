"""`gankit report` (one HTML page for runs) and `gankit export` (the sampling network as ONNX or TorchScript)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import GankitError
from ..core.io import refuse_existing
from .common import add_force_flag


def cmd_report(args: argparse.Namespace) -> int:
    from ..report import write_report
    from ..tune.report import is_study_dir

    if len(args.runs) == 1 and is_study_dir(Path(args.runs[0])):  # a `gankit tune` study folder
        from ..tune.report import report_study

        if args.out:
            raise GankitError("a study's report is written to STUDY/report.html (with STUDY/best.yaml); drop --out")
        for path in report_study(Path(args.runs[0]), args.storage):
            print(f"wrote {path}")
        return 0
    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() not in (".html", ".htm"):
        raise GankitError(f"--out {out}: use a file ending in .html")
    if out is not None:
        refuse_existing([out], args.force)  # RUN/report.html, the default, is gankit's own: refreshed
    path = write_report([Path(r) for r in args.runs], out, interpolation=not args.no_interpolation)
    print(f"wrote {path} (open it in a browser; it needs no network)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import export_generator, read_metadata

    refuse_existing([Path(args.out)], args.force)
    path = export_generator(args.run, args.format, Path(args.out), args.checkpoint, args.direction)
    meta = read_metadata(path)
    ins = ", ".join(meta.get("inputs", []))
    print(
        f"wrote {path}: {meta.get('family', meta.get('kind'))} generator (step {meta.get('step')}), inputs {ins} -> images "
        f"{meta.get('image_shape')} in [-1, 1], dynamic batch"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from ..export import FORMATS

    r = sub.add_parser("report", help="one self-contained HTML page: a run, several runs side by side, or a study")
    r.add_argument("runs", nargs="+", metavar="RUN", help="run folders, or one `gankit tune` study folder")
    r.add_argument("--storage", metavar="URL", help="a study's storage when it is not STUDY/study.db (a server URL)")
    r.add_argument("--out", help="HTML file (default RUN/report.html for one run; required for several)")
    r.add_argument("--no-interpolation", action="store_true", help="skip the latent interpolation strip (loads G)")
    add_force_flag(r)
    r.set_defaults(func=cmd_report)

    e = sub.add_parser("export", help="the sampling network as ONNX or TorchScript, with a dynamic batch size")
    e.add_argument("run", help="run folder")
    e.add_argument("--format", choices=FORMATS, required=True)
    e.add_argument("--out", required=True, help="file to write, e.g. generator.onnx or generator.pt")
    e.add_argument("--checkpoint", default="latest", help="latest, final, best or a checkpoint folder name")
    e.add_argument(
        "--direction", choices=["AtoB", "BtoA"], help="cyclegan runs: which generator, A -> B (default) or B -> A"
    )
    add_force_flag(e)
    e.set_defaults(func=cmd_export)

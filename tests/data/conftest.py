"""Fixtures for the data tests: a loopback HTTP server with Range support, small image/archive makers, and
tiny generated datasets (2 classes, 32 px)."""

from __future__ import annotations

import io
import tarfile
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from wsolbench.data.synthetic import SynthParams, generate

MAX_REQUESTS = 200
MAX_SECONDS = 30


class LoopbackServer:
    """Serves ``files`` (request path with query -> bytes) on 127.0.0.1 in a thread.

    ``truncate[path] = n`` announces the full length but sends only n bytes, then closes the connection;
    paths in ``ignore_range`` answer every request with the whole file (200). ``requests`` logs
    ``(path, Range header)``. The serving loop ends after MAX_REQUESTS requests or MAX_SECONDS seconds.
    """

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.truncate: dict[str, int] = {}
        self.ignore_range: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                range_header = self.headers.get("Range")
                if range_header and self.path not in server.ignore_range:
                    start = int(range_header.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                payload = body[start:]
                if self.path in server.truncate:
                    payload = payload[: server.truncate[self.path]]
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.timeout = 0.05
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        deadline = time.monotonic() + MAX_SECONDS
        while not self._stop.is_set() and len(self.requests) < MAX_REQUESTS and time.monotonic() < deadline:
            self.httpd.handle_request()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        self.httpd.server_close()

    def count(self, path: str) -> int:
        return sum(1 for p, _ in self.requests if p == path)


@pytest.fixture
def server():
    loopback = LoopbackServer()
    yield loopback
    loopback.close()


def jpeg_bytes(width: int, height: int, seed: int = 0) -> bytes:
    """A noisy RGB JPEG (noise keeps the file long enough to truncate mid-scan)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def png_mask_bytes(width: int, height: int) -> bytes:
    mask = np.zeros((height, width), dtype=np.uint8)
    mask[height // 4: height // 2, width // 4: width // 2] = 255
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    return buffer.getvalue()


def tar_bytes(members: dict[str, bytes], mode: str = "w:gz") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zip_file:
        for name, data in members.items():
            zip_file.writestr(name, data)
    return buffer.getvalue()


def write_split(folder, ids_labels_sizes, localization_lines) -> None:
    """Write the four metadata files (no final newline) of a split by hand, as wsolevaluation does."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "image_ids.txt").write_text("\n".join(i for i, _, _ in ids_labels_sizes))
    (folder / "class_labels.txt").write_text("\n".join(f"{i},{c}" for i, c, _ in ids_labels_sizes))
    (folder / "image_sizes.txt").write_text("\n".join(f"{i},{s[0]},{s[1]}" for i, _, s in ids_labels_sizes if s))
    (folder / "localization.txt").write_text("\n".join(localization_lines))


@pytest.fixture
def fakes():
    """The fixture makers above, for tests: ``fakes.jpeg(w, h)``, ``fakes.tar({...})``, ..."""
    return SimpleNamespace(jpeg=jpeg_bytes, png_mask=png_mask_bytes, tar=tar_bytes, zip=zip_bytes,
                           write_split=write_split)


TINY = dict(classes=2, train_per_class=2, val_per_class=1, test_per_class=2, image_size=32, seed=7)


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own empty wsolbench cache folder."""
    monkeypatch.setenv("WSOLBENCH_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def tiny_params():
    """The parameters of the tiny datasets (a fresh dict)."""
    return dict(TINY)


@pytest.fixture(scope="session")
def tiny_boxes_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "boxes", SynthParams(variant="boxes", **TINY))


@pytest.fixture(scope="session")
def tiny_masks_root(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synth") / "masks", SynthParams(variant="masks", **TINY))

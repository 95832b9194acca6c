"""``main.py bench-serve``: the server's speed, measured against a real ``main.py serve``.

- ``/predict`` requests/s and p50/p95 latency with 1, 4 and 16 concurrent clients, on one
  640x480 JPEG with one real face (a letterboxed frame of the sample clip, as ``main.py bench``);
  the same at 16 clients with 1, 2 and 4 pooled pipelines; and what building a fresh
  pipeline per request would cost instead of borrowing one.
- The transfer comparison the seed projects made: multipart bytes (``/predict``), a base64
  form field (``/face``) and WebSocket binary frames (``/ws``), ms per frame on the same images.
- The webcam page's own loop in headless Chromium with the sample clip as its camera: frames/s
  and round trip (and, with ``--screenshot``, a picture of it).

It writes the JSON and the markdown table between the markers of ``--doc``. A script that
reports, not a timed test. Needs the dev requirements (httpx; Playwright and chromium for the page).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import cv2
import numpy as np

from detector.bench import _stats, letterbox
from detector.errors import UserError
from detector.paths import app_dir
from detector.serve.browser import CHROMIUM, browser_page, clip_frames, write_y4m

SIZE = (640, 480)
FACE_FRAME = 200  # a sample-clip frame with the face turned to the camera
CLIENTS = (1, 4, 16)
WORKERS = (1, 2, 4)
BEGIN, END = "<!-- bench-serve:begin -->", "<!-- bench-serve:end -->"


def _jpeg(frame: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", letterbox(frame, SIZE), [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """``main.py serve`` in a child process, as a user runs it (on a free port unless given);
    a context manager. Its output goes to a temporary file, never a pipe nobody drains (a full
    pipe would stall the server): ``output`` holds it once the server is closed."""

    def __init__(self, *args: str, port: int | None = None):
        import httpx

        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = ""
        self._log = tempfile.TemporaryFile("w+", encoding="utf-8")
        command = [sys.executable, str(app_dir() / "main.py"), "serve", "--port", str(self.port), "--no-access-log", *args]
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, text=True,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 120
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        self.close()
        raise UserError(f"main.py serve did not start: {self.output[-500:]}")

    def close(self) -> None:
        """SIGTERM, as a service manager stops it; then ``output`` is what it wrote."""
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(timeout=30)
        if not self._log.closed:
            self._log.seek(0)
            self.output = self._log.read()
            self._log.close()

    def __enter__(self) -> "Server":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _server_ms(response) -> float:
    """decode + pipeline milliseconds from the server's ``Server-Timing`` header."""
    return sum(float(ms) for ms in re.findall(r"dur=([\d.]+)", response.headers.get("server-timing", "")))


def load(url: str, image: bytes, clients: int, requests: int) -> dict:
    """``requests`` uploads of ``image`` from ``clients`` threads, each with its own keep-alive connection."""
    import httpx

    def client(count: int) -> list[float]:
        times = []
        with httpx.Client(timeout=120) as http:
            for _ in range(count):
                started = time.perf_counter()
                answer = http.post(url + "/predict", files={"image": ("face.jpg", image, "image/jpeg")})
                answer.raise_for_status()
                times.append((time.perf_counter() - started) * 1000)
        return times

    shares = [requests // clients + (i < requests % clients) for i in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = [ms for part in pool.map(client, shares) for ms in part]
    wall = time.perf_counter() - started
    return {"clients": clients, "requests": requests, "requests_per_s": round(requests / wall, 1), "latency_ms": _stats(latencies)}


def transfers(url: str, images: list[bytes]) -> dict:
    """Each image sent one way after the other, one at a time: ms per frame end to end, the
    server's own ms (Server-Timing, or the WebSocket answer's timings), and bytes sent."""
    import httpx
    from websockets.sync.client import connect

    rows: dict[str, dict] = {}
    with httpx.Client(timeout=120) as http:
        for name, send in (("multipart bytes (POST /predict)", lambda data: http.post(url + "/predict", files={"image": ("f.jpg", data)})),
                           ("base64 form (POST /face)", lambda data: http.post(url + "/face", data={"imgBase64": _data_url(data)}))):
            send(images[0])  # warm-up
            rows[name] = _timed(images, send, _server_ms, _sent_bytes(name, images))
    with connect(url.replace("http", "ws") + "/ws", max_size=None) as ws:
        def exchange(data: bytes) -> dict:
            ws.send(data)
            return json.loads(ws.recv(timeout=120))

        exchange(images[0])
        rows["WebSocket binary (/ws)"] = _timed(images, exchange, lambda a: a["timings"]["decode"] + a["timings"]["total"],
                                                _sent_bytes("ws", images))
    return rows


def _data_url(data: bytes) -> str:
    import base64

    return "data:image/jpeg;base64," + base64.b64encode(data).decode()


def _sent_bytes(name: str, images: list[bytes]) -> float:
    """Mean payload per frame: the JPEG itself, or its form-encoded data URL."""
    if "base64" in name:
        return float(np.mean([len(urlencode({"imgBase64": _data_url(data)})) for data in images]))
    return float(np.mean([len(data) for data in images]))


def _timed(images: list[bytes], send, server_ms, sent_bytes: float) -> dict:
    total, server = [], []
    for data in images:
        started = time.perf_counter()
        answer = send(data)
        total.append((time.perf_counter() - started) * 1000)
        server.append(server_ms(answer))
    overhead = np.subtract(total, server)
    return {"bytes_per_frame": round(sent_bytes), "ms_per_frame": _stats(total), "server_ms": _stats(server),
            "transfer_ms": _stats(overhead.tolist()), "frames": len(images)}


def page_loop(url: str, seconds: float, screenshot: Path | None) -> dict:
    """The page in headless Chromium, its camera two seconds of the sample clip at 24 fps (looped):
    frames answered per second and round trips, read from the page's own state."""
    if not Path(CHROMIUM).is_file():
        return {"skipped": f"no {CHROMIUM}"}
    camera_fps = 24
    with tempfile.TemporaryDirectory() as tmp:
        camera = write_y4m(Path(tmp) / "camera.y4m", clip_frames(150, 48), fps=camera_fps)
        with browser_page(url + "/", camera) as page:
            page.wait_for_function("window.page.frames >= 10 && window.page.faces.length > 0", timeout=120_000)
            first, started, latencies = page.evaluate("window.page.frames"), time.perf_counter(), []
            while time.perf_counter() - started < seconds:
                time.sleep(0.25)
                latencies.append(page.evaluate("window.page.latencyMs"))
            frames = page.evaluate("window.page.frames") - first
            elapsed = time.perf_counter() - started
            if screenshot:  # the header and the video, not the empty viewport below
                stage = page.locator("#stage").bounding_box()
                page.screenshot(path=str(screenshot), clip={"x": 0, "y": 0, "width": stage["x"] * 2 + stage["width"],
                                                            "height": stage["y"] + stage["height"] + stage["x"]})
    return {"camera_fps": camera_fps, "frames_per_s": round(frames / elapsed, 1), "round_trip_ms": _stats(latencies),
            "seconds": round(elapsed, 1)}


def fresh_pipeline_ms(runs: int = 5) -> dict:
    """What building the pipeline would add to every request, were one built per request."""
    from detector.config import PipelineConfig
    from detector.pipeline import create_pipeline

    times = []
    for _ in range(runs):
        started = time.perf_counter()
        pipeline = create_pipeline(PipelineConfig())
        times.append((time.perf_counter() - started) * 1000)
        pipeline.close()
    return _stats(times)


def table(report: dict) -> str:
    """The markdown that docs/SERVING.md includes, from the JSON alone."""

    def ms(stats: dict) -> str:
        return f"{stats['p50']:.1f} | {stats['p95']:.1f}"

    lines = ["| /predict, one 640×480 JPEG with one face | requests/s | p50 ms | p95 ms |", "|---|---|---|---|"]
    for row in report["predict"]:
        clients = f"{row['clients']} client" + ("s" if row["clients"] > 1 else "")
        lines.append(f"| {clients} at once, {report['workers_default']} pipelines (default) | {row['requests_per_s']} | {ms(row['latency_ms'])} |")
    for workers, row in report["workers"].items():
        lines.append(f"| 16 clients at once, `--workers {workers}` | {row['requests_per_s']} | {ms(row['latency_ms'])} |")
    fresh = report["fresh_pipeline_ms"]
    lines += ["", f"Building a fresh pipeline for each request instead of borrowing a pooled one: +{fresh['p50']:.1f} ms "
                  f"(p50; p95 {fresh['p95']:.1f}) per request.", "",
              "| transfer, the same images one at a time | bytes sent / frame | ms / frame p50 | p95 | server ms p50 | transfer + framework ms p50 |",
              "|---|---|---|---|---|---|"]
    for name, row in report["transfer"].items():
        lines.append(f"| {name} | {row['bytes_per_frame']:,} | {ms(row['ms_per_frame'])} | {row['server_ms']['p50']:.1f} "
                     f"| {row['transfer_ms']['p50']:.1f} |")
    page = report["page"]
    if "skipped" in page:
        lines += ["", f"Page loop: not measured ({page['skipped']})."]
    else:
        lines += ["", f"Page loop (headless Chromium, fake camera at {page['camera_fps']} fps, {page['seconds']} s): "
                      f"**{page['frames_per_s']} frames/s**, round trip p50 {page['round_trip_ms']['p50']:.0f} ms, "
                      f"p95 {page['round_trip_ms']['p95']:.0f} ms."]
    machine = report["machine"]
    lines += ["", f"Measured {report['when']}: {machine['cpus']} CPUs, {machine['platform']}, Python {machine['python']}; "
                  f"load average (1, 5, 15 min) {machine['load_before']} before, {machine['load_after']} after."]
    return "\n".join(lines)


def write_doc(doc: Path, text: str) -> None:
    """Replace what lies between the bench-serve markers of ``doc`` with ``text``."""
    content = doc.read_text(encoding="utf-8")
    if BEGIN not in content or END not in content:
        raise UserError(f"{doc} has no {BEGIN} ... {END} markers to put the table between")
    head, rest = content.split(BEGIN, 1)
    doc.write_text(f"{head}{BEGIN}\n{text}\n{END}{rest.split(END, 1)[1]}", encoding="utf-8")


def measure(args: argparse.Namespace) -> dict:
    frames = clip_frames(FACE_FRAME - args.frames // 2, args.frames)
    image = _jpeg(frames[len(frames) // 2])
    report: dict = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                                "load_before": [round(v, 2) for v in os.getloadavg()]},
                    "image": {"size": list(SIZE), "jpeg_bytes": len(image), "clip_frame": FACE_FRAME}}
    from detector.serve.config import default_workers

    report["workers_default"] = default_workers()
    with Server() as server:
        load(server.url, image, 4, 20)  # warm-up
        report["predict"] = [load(server.url, image, clients, args.requests) for clients in CLIENTS]
        report["transfer"] = transfers(server.url, [_jpeg(frame) for frame in frames])
        report["page"] = page_loop(server.url, args.seconds, args.screenshot)
    report["workers"] = {}
    for workers in WORKERS:
        with Server("--workers", str(workers)) as server:
            load(server.url, image, 4, 20)
            report["workers"][str(workers)] = load(server.url, image, 16, args.requests)
    report["fresh_pipeline_ms"] = fresh_pipeline_ms()
    report["machine"]["load_after"] = [round(v, 2) for v in os.getloadavg()]
    return report


def bench_serve_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="main.py bench-serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=Path("docs/serving.json"), help="write the results here (default: docs/serving.json)")
    parser.add_argument("--doc", type=Path, default=Path("docs/SERVING.md"),
                        help=f"put the table between {BEGIN} and {END} in this file (default: docs/SERVING.md)")
    parser.add_argument("--requests", type=int, default=160, help="uploads per /predict measurement (default 160)")
    parser.add_argument("--frames", type=int, default=40, help="images of the transfer comparison (default 40)")
    parser.add_argument("--seconds", type=float, default=10, help="how long the page loop is measured (default 10)")
    parser.add_argument("--screenshot", type=Path, help="save the page here at the end of its measurement (docs/page.png)")
    parser.add_argument("--table-only", action="store_true", help="only rewrite the table in --doc from --json")
    args = parser.parse_args(argv)
    try:
        import httpx  # noqa: F401 - the client of every measurement
    except ImportError:
        raise UserError("bench-serve needs the dev requirements: pip install -r requirements-dev.txt") from None
    if args.table_only:
        report = json.loads(args.json.read_text(encoding="utf-8"))
    else:
        report = measure(args)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    text = table(report)
    write_doc(args.doc, text)
    print(text)
    print(f"\nwritten: {args.json}, table in {args.doc}")
    return 0

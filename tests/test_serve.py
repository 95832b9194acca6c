"""``main.py serve``: every endpoint and error through FastAPI's test client, then a real
uvicorn process on a free port (32 concurrent uploads, garbage, the WebSocket, shutdown).

Inputs are real faces: frames of the bundled sample clip, letterboxed to 640x480 as
``main.py bench`` does; the face-free frame is the clip's own wall.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from detector.bench import letterbox
from detector.config import DetectionConfig, IdentityConfig, PipelineConfig
from detector.pipeline import create_pipeline
from detector.results import FrameResult
from detector.serve.app import create_app
from detector.serve.bench import Server
from detector.serve.browser import clip_frames
from detector.serve.config import ServeConfig
from tests.conftest import REPO_ROOT, run_main
from tools.scenes import background

FACE_FRAMES = (120, 200, 260, 330)  # the woman faces the camera in these frames of the clip
SERVER_MODULES = ("fastapi", "uvicorn", "starlette", "python_multipart", "multipart")


def clip_frame(index: int) -> np.ndarray:
    return letterbox(clip_frames(index, 1)[0], (640, 480))


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def fresh_result(image: np.ndarray) -> FrameResult:
    """What a pipeline that has never seen a frame finds: the desktop app on this one image (a still)."""
    return create_pipeline(PipelineConfig(), still=True)(FrameResult(0, 0.0, "alone", image))


@pytest.fixture(scope="module")
def face_jpeg() -> bytes:
    return jpeg(clip_frame(FACE_FRAMES[1]))


@pytest.fixture(scope="module")
def face_image(face_jpeg) -> np.ndarray:
    """The picture the server sees when sent ``face_jpeg``."""
    return cv2.imdecode(np.frombuffer(face_jpeg, np.uint8), cv2.IMREAD_COLOR)


WS = "ws://localhost/ws"  # the test client's WebSocket URLs name no host of its base_url


def local(app) -> TestClient:
    """A test client that names the server as a browser on this machine does (Host: localhost)."""
    return TestClient(app, base_url="http://localhost")


@pytest.fixture(scope="module")
def client():
    with local(create_app(ServeConfig(workers=2))) as test_client:
        yield test_client


def upload(client, data: bytes, name: str = "face.jpg", **params):
    return client.post("/predict", files={"image": (name, data, "application/octet-stream")}, params=params)


def check_probs(probs: dict, labels: list[str]) -> None:
    values = list(probs.values())
    assert sorted(probs) == sorted(labels)
    assert values == sorted(values, reverse=True), "probabilities must come most likely first"
    assert abs(sum(values) - 1) < 0.01


# --- the endpoints -----------------------------------------------------------------------

def test_healthz_model_docs_and_page(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    model = client.get("/model").json()
    assert model["labels"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]  # saved_model_trt/labels.txt
    assert model["backend"] == "onnx" and model["model_file"] == "model.int8.onnx" and "/" not in model["model_file"]
    assert model["input_size"] == [48, 48] and model["channels"] == 1
    schema = client.get("/openapi.json").json()
    assert {"/predict", "/face", "/healthz", "/model"} <= set(schema["paths"])
    assert "imgBase64" in json.dumps(schema["paths"]["/face"])
    assert client.get("/docs").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "getUserMedia" in page.text and '"/ws"' in page.text


def test_predict_finds_the_face_the_app_finds(client, face_jpeg, face_image):
    answer = upload(client, face_jpeg)
    assert answer.status_code == 200
    assert re.fullmatch(r"decode;dur=[\d.]+, pipeline;dur=[\d.]+", answer.headers["server-timing"])
    body = answer.json()
    expected = fresh_result(face_image).records
    assert (body["width"], body["height"]) == (640, 480)
    assert len(body["faces"]) == len(expected) == 1
    face, want = body["faces"][0], expected[0]
    assert face["box"] == want["box"] and face["label"] == want["label"]
    assert face["probs"] == pytest.approx(want["probs"], abs=1e-4)
    check_probs(face["probs"], client.get("/model").json()["labels"])
    x, y, w, h = face["box"]
    assert 260 < x + w / 2 < 500 and 100 < y + h / 2 < 300  # the woman's face, right of centre


def test_predict_with_blazeface_gives_the_keypoints_the_app_writes(client, face_jpeg, face_image):
    pipeline = PipelineConfig(detection=DetectionConfig("blazeface"))
    with local(create_app(ServeConfig(pipeline=pipeline, workers=1))) as blaze:
        face = upload(blaze, face_jpeg).json()["faces"][0]
    want = create_pipeline(pipeline)(FrameResult(0, 0.0, "alone", face_image)).records[0]
    assert face["box"] == want["box"] and face["keypoints"] == want["keypoints"] and len(face["keypoints"]) == 6
    assert upload(client, face_jpeg).json()["faces"][0]["keypoints"] is None  # Haar: none


def test_predict_whole_picture_as_one_face(client, face_image):
    x, y, w, h = fresh_result(face_image).records[0]["box"]
    crop = face_image[y : y + h, x : x + w]
    body = upload(client, jpeg(crop), whole="true").json()
    assert body["faces"][0]["box"] == [0, 0, crop.shape[1], crop.shape[0]]
    check_probs(body["faces"][0]["probs"], client.get("/model").json()["labels"])


def test_predict_reads_png_and_applies_exif_orientation(client, face_image):
    """A phone photo stores its pixels sideways with an EXIF tag; boxes are in the upright picture."""
    from PIL import Image

    upright = upload(client, cv2.imencode(".png", face_image)[1].tobytes(), "face.png").json()
    sideways = cv2.rotate(face_image, cv2.ROTATE_90_COUNTERCLOCKWISE)  # Orientation 6: turn 90 degrees clockwise to show
    picture = Image.fromarray(cv2.cvtColor(sideways, cv2.COLOR_BGR2RGB))
    exif = picture.getexif()
    exif[0x0112] = 6
    stored = io.BytesIO()
    picture.save(stored, "JPEG", quality=95, exif=exif)
    rotated = upload(client, stored.getvalue()).json()
    assert (rotated["width"], rotated["height"]) == (upright["width"], upright["height"]) == (640, 480)
    assert len(rotated["faces"]) == 1
    assert np.abs(np.subtract(rotated["faces"][0]["box"], upright["faces"][0]["box"])).max() <= 8


def test_one_shot_requests_share_nothing(face_image):
    """With one pooled pipeline, each upload of a sequence gets what a pipeline that never saw
    a frame gets: no face re-found from an earlier request, no smoothing across requests."""
    frames = [clip_frame(i) for i in FACE_FRAMES] + [face_image, face_image, background(), face_image]
    with local(create_app(ServeConfig(workers=1))) as one:
        for frame in frames:
            decoded = cv2.imdecode(np.frombuffer(jpeg(frame), np.uint8), cv2.IMREAD_COLOR)
            got = upload(one, jpeg(frame)).json()["faces"]
            want = fresh_result(decoded).records
            assert [f["box"] for f in got] == [f["box"] for f in want]
            assert [f["probs"] for f in got] == [pytest.approx(f["probs"], abs=1e-4) for f in want]


def test_face_contract_data_url_and_bare_base64(client, face_jpeg, face_image):
    encoded = base64.b64encode(face_jpeg).decode()
    want = fresh_result(face_image).records[0]["probs"]
    for text in ("data:image/jpeg;base64," + encoded, encoded):
        answer = client.post("/face", data={"imgBase64": text})
        assert answer.status_code == 200
        predictions = answer.json()["predictions"]
        check_probs(predictions, list(want))
        assert predictions == pytest.approx(want, abs=1e-4)


def test_face_without_a_face_is_a_clear_error(client):
    encoded = base64.b64encode(jpeg(background())).decode()
    answer = client.post("/face", data={"imgBase64": encoded})
    assert answer.status_code == 422
    assert answer.json() == {"detail": "no face found in the image"}


GARBAGE = [  # (what, request, status, words in the JSON detail)
    ("not an image", ("predict", b"hello, this is text"), 400, "not an image"),
    ("empty file", ("predict", b""), 400, "empty"),
    ("truncated JPEG", ("predict", "truncated-jpeg"), 400, "truncated"),
    ("truncated PNG", ("predict", "truncated-png"), 400, "truncated"),
    ("zero bytes of base64", ("face", ""), 400, "imgBase64"),
    ("not base64", ("face", "data:image/jpeg;base64,@@@@"), 400, "base64"),
    ("base64 of text", ("face", base64.b64encode(b"no image here").decode()), 400, "not an image"),
    ("no form field", ("face", None), 400, "imgBase64"),
    ("no file field", ("predict", None), 422, "image"),
]


@pytest.mark.parametrize("what,request_,status,words", GARBAGE, ids=[row[0] for row in GARBAGE])
def test_garbage_is_a_4xx_json_error(client, face_jpeg, face_image, what, request_, status, words):
    route, payload = request_
    good = face_jpeg
    payload = {"truncated-jpeg": good[: len(good) // 2],
               "truncated-png": cv2.imencode(".png", face_image)[1].tobytes()[:20000]}.get(payload, payload)
    if route == "predict":
        answer = client.post("/predict") if payload is None else upload(client, payload)
    else:
        answer = client.post("/face", data={} if payload is None else {"imgBase64": payload})
    assert answer.status_code == status
    assert words in json.dumps(answer.json()["detail"])
    assert client.get("/healthz").status_code == 200


def test_size_limits_are_413(face_jpeg):
    data = face_jpeg
    small = ServeConfig(max_bytes=len(data) - 1)
    few_pixels = ServeConfig(max_pixels=640 * 480 - 1)
    for config, words in ((small, "bytes"), (few_pixels, "pixels")):
        with local(create_app(replace(config, workers=1))) as limited:
            answer = upload(limited, data)
            assert answer.status_code == 413 and words in answer.json()["detail"]
            face = limited.post("/face", data={"imgBase64": base64.b64encode(data).decode()})
            assert face.status_code == 413
            with limited.websocket_connect(WS) as ws:
                ws.send_bytes(data)
                assert ws.receive_json()["status"] == 413
    with local(create_app(ServeConfig(max_bytes=1000, workers=1))) as limited:  # refused before it is read
        big = cv2.imencode(".png", cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))[1].tobytes()
        answer = limited.post("/predict", files={"image": ("big.png", big)})
        assert answer.status_code == 413 and "request body" in answer.json()["detail"]


def png_bomb(side: int) -> bytes:
    """A valid gray PNG of side x side black pixels, a few hundred KB that unpack to side**2 bytes
    (three times that as BGR); written row by row, so making it costs no memory either."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    packer, row = zlib.compressobj(9), b"\0" * (side + 1)  # each row: filter byte 0, then its pixels
    pixels = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_unopened(client):
    """20000 x 20000 pixels in well under the byte limit: 413 from the header alone, with no
    1.2 GB picture unpacked first (the process's peak memory barely moves)."""
    bomb = png_bomb(20_000)
    assert len(bomb) < ServeConfig().max_bytes
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    answer = upload(client, bomb, "bomb.png")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert answer.status_code == 413 and "pixels; the limit is 40000000" in answer.json()["detail"]
    assert grown_mb < 100, f"the server unpacked the picture: peak memory grew {grown_mb:.0f} MB"
    assert upload(client, png_bomb(64), "small.png").status_code == 200, "the same PNG writer makes readable files"


def hdr_bomb(side: int) -> bytes:
    """A valid Radiance HDR (a format Pillow does not identify) of side x side gray pixels,
    run-length encoded row by row: a few bytes per row that OpenCV unpacks to 12 bytes a pixel."""
    runs = [127] * (side // 127) + ([side % 127] if side % 127 else [])
    component = b"".join(bytes([128 + run, 128]) for run in runs)  # a run of `run` samples of 128
    row = bytes([2, 2, side >> 8, side & 255]) + component * 4  # R, G, B, exponent
    return f"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y {side} +X {side}\n".encode() + row * side


def peak_memory_kib(pid: int) -> int:
    return int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1))


def test_real_server_refuses_a_large_hdr_unopened():
    """Pillow cannot read an HDR header, so OpenCV's own header check holds it to --max-pixels:
    413, with the 4000 x 4000 float picture (190 MB) never unpacked in the server."""
    bomb = hdr_bomb(4000)
    decoded = cv2.imdecode(np.frombuffer(hdr_bomb(64), np.uint8), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    assert decoded.shape == (64, 64, 3) and np.allclose(decoded, 0.5), "the same writer makes readable files"
    with Server("--max-pixels", "1000000") as server:
        assert httpx.post(server.url + "/predict", files={"image": ("small.hdr", hdr_bomb(64))}, timeout=60).status_code == 200
        peak = peak_memory_kib(server.process.pid)
        answer = httpx.post(server.url + "/predict", files={"image": ("bomb.hdr", bomb)}, timeout=120)
        grown_mb = (peak_memory_kib(server.process.pid) - peak) / 1024
    assert grown_mb < 100, f"the server unpacked the picture: peak memory grew {grown_mb:.0f} MB"
    assert answer.status_code == 413 and "limit of 1000000" in answer.json()["detail"], answer.text


def test_ws_tracks_and_smooths_per_connection(client):
    frames = [jpeg(clip_frame(i)) for i in range(200, 212)]
    with client.websocket_connect(WS) as first, client.websocket_connect(WS) as second:
        answers = []
        for data in frames:
            first.send_bytes(data)
            answers.append(first.receive_json())
        second.send_bytes(frames[-1])
        alone = second.receive_json()
    assert [a["frame"] for a in answers] == list(range(len(frames)))
    assert all(len(a["faces"]) == 1 for a in answers)
    ids = {a["faces"][0]["id"] for a in answers}
    assert ids == {1}, "one face keeps one id on its connection"
    assert alone["frame"] == 0 and alone["faces"][0]["id"] == 1, "a new connection starts its own tracks"
    later = answers[-1]["faces"][0]
    assert later["probs"] != later["raw_probs"], "the stream smooths; raw_probs keep this frame's own"
    assert alone["faces"][0]["probs"] == alone["faces"][0]["raw_probs"]
    assert {"decode", "detect", "classify", "smooth", "total"} <= set(answers[-1]["timings"])
    assert answers[-1]["time"] > answers[0]["time"]


def test_ws_face_sized_picture_without_a_detection(client, face_image):
    """A 200x200 crop inside the woman's face: the detector finds no face in it, so the
    whole-image stage classifies it whole; its answer is a result, and the socket stays open."""
    x, y, w, h = fresh_result(face_image).records[0]["box"]
    crop = face_image[y + h // 2 - 100 : y + h // 2 + 100, x + w // 2 - 100 : x + w // 2 + 100]
    assert fresh_result(crop).records[0].get("whole_image"), "the crop is classified whole, not detected"
    with client.websocket_connect(WS) as ws:
        for index in range(2):
            ws.send_bytes(jpeg(crop))
            answer = ws.receive_json()
            assert answer["frame"] == index and (answer["width"], answer["height"]) == (200, 200)
            assert [face["box"] for face in answer["faces"]] == [[0, 0, 200, 200]]
            check_probs(answer["faces"][0]["probs"], client.get("/model").json()["labels"])


def test_ws_bad_frames_get_an_error_and_the_connection_lives(client, face_jpeg):
    with client.websocket_connect(WS) as ws:
        ws.send_text("hello")
        assert ws.receive_json() == {"error": "send binary JPEG or PNG frames, not text", "status": 400}
        ws.send_bytes(b"\xff\xd8garbage")
        assert ws.receive_json()["status"] == 400
        ws.send_bytes(face_jpeg)
        assert len(ws.receive_json()["faces"]) == 1


def face_search_threads() -> int:
    return sum(thread.name.startswith("face-search") for thread in threading.enumerate())


def test_ws_connections_share_the_model_and_end_their_threads(caplog, face_jpeg):
    """The model loads once for the server, not per pipeline or connection; each connection's
    face-search thread ends with it; past ``max_streams`` a connection is closed with a reason."""
    from starlette.websockets import WebSocketDisconnect

    with caplog.at_level(logging.INFO, logger="detector.classifier"):
        with local(create_app(ServeConfig(workers=2, max_streams=3))) as limited:
            before = face_search_threads()
            for _ in range(2):
                with ExitStack() as stack:
                    sockets = [stack.enter_context(limited.websocket_connect(WS)) for _ in range(3)]
                    for ws in sockets:
                        for _ in range(IdentityConfig().full_every + 2):  # past its first full-frame search on the thread
                            ws.send_bytes(face_jpeg)
                            assert len(ws.receive_json()["faces"]) == 1
                    assert face_search_threads() == before + 3, "each connection searches on a thread of its own"
                    with pytest.raises(WebSocketDisconnect) as refused:
                        with limited.websocket_connect(WS) as extra:
                            extra.receive_json()
                    assert refused.value.code == 1013 and "too many connections" in refused.value.reason
                assert face_search_threads() == before, "a closed connection leaves no thread behind"
    loads = [record for record in caplog.records if record.name == "detector.classifier" and record.getMessage().startswith("model ")]
    assert len(loads) == 1, [record.getMessage() for record in loads]


def test_ws_from_another_site_is_refused(client):
    from starlette.websockets import WebSocketDisconnect

    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect(WS, headers={"origin": "http://evil.example"}) as ws:
            ws.receive_json()
    assert refused.value.code == 1008
    with client.websocket_connect(WS, headers={"origin": "http://localhost"}) as ws:  # the page's own origin
        ws.send_text("x")
        assert ws.receive_json()["status"] == 400


def test_loopback_server_refuses_other_host_names(server):
    """Bound to 127.0.0.1, the server answers only to its loopback names: a page on another
    site whose name was rebound to 127.0.0.1 sends its own Host and gets 400."""
    assert httpx.get(server + "/model", headers={"host": "evil.example"}, timeout=10).status_code == 400
    for host in ("localhost", "127.0.0.1", "[::1]"):
        port = server.rsplit(":", 1)[1]
        assert httpx.get(server + "/model", headers={"host": f"{host}:{port}"}, timeout=10).status_code == 200, host


def test_no_cors_unless_asked():
    origin = {"origin": "http://localhost:3000"}
    with local(create_app(ServeConfig(workers=1))) as plain:
        assert "access-control-allow-origin" not in plain.get("/healthz", headers=origin).headers
    with local(create_app(ServeConfig(workers=1, cors_origins=("http://localhost:3000",)))) as allowed:
        assert allowed.get("/healthz", headers=origin).headers["access-control-allow-origin"] == "http://localhost:3000"


# --- the command and the desktop app ------------------------------------------------------

def test_desktop_app_never_imports_the_server(tmp_path):
    image = tmp_path / "face.jpg"
    image.write_bytes(jpeg(clip_frame(FACE_FRAMES[1])))
    code = ("import sys; from detector.cli import main; "
            f"rc = main(['--source', {str(image)!r}, '--no-display', '--log', {str(tmp_path / 'r.jsonl')!r}]); "
            f"print(rc, sorted(m for m in sys.modules if m.split('.')[0] in {SERVER_MODULES!r}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "0 []", done.stderr
    assert json.loads((tmp_path / "r.jsonl").read_text().splitlines()[0])["faces"], "the app ran and found the face"


@pytest.mark.parametrize("args,words", [
    (["--model", "no/such/model"], "model not found"),
    (["--cascade", "no_such.xml"], "Haar cascade not found"),
    (["--workers", "0"], "--workers must be 1 or more"),
    (["--max-bytes", "0"], "--max-bytes must be 1 or more"),
    (["--port", "70000"], "--port must be 0-65535"),
], ids=["model", "cascade", "workers", "max-bytes", "port"])
def test_serve_user_errors_are_one_line(args, words):
    done = run_main("serve", *args, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and words in done.stderr


def test_serve_model_without_labels_is_one_line(tmp_path):
    """A model folder the classifier cannot load (no labels.txt) stops ``serve`` before uvicorn
    starts: one line and exit code 2, not a lifespan traceback."""
    model = tmp_path / "model"
    shutil.copytree(REPO_ROOT / "saved_model_trt", model, ignore=shutil.ignore_patterns("labels.txt"))
    done = run_main("serve", "--model", str(model), "--port", "0", timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "labels.txt" in done.stderr
    assert "Traceback" not in done.stderr


def test_serving_doc_table_is_generated_from_its_json(tmp_path):
    """docs/SERVING.md's numbers are bench-serve's table of docs/serving.json, not retyped."""
    doc = tmp_path / "SERVING.md"
    shutil.copy(REPO_ROOT / "docs" / "SERVING.md", doc)
    done = run_main("bench-serve", "--table-only", "--json", str(REPO_ROOT / "docs" / "serving.json"), "--doc", str(doc))
    assert done.returncode == 0, done.stderr
    assert doc.read_text(encoding="utf-8") == (REPO_ROOT / "docs" / "SERVING.md").read_text(encoding="utf-8")
    assert "| 16 clients at once" in doc.read_text(encoding="utf-8")


def stop(server: Server) -> str:
    """SIGTERM, as a service manager stops it: uvicorn finishes what it serves, shuts the app
    down, then ends by the signal it caught (as uvicorn does), not by a crash."""
    server.close()
    output = server.output
    assert server.process.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in output, output
    assert "Traceback" not in output, output
    return output


@pytest.fixture(scope="module")
def server():
    running = Server()
    yield running.url
    stop(running)


def test_real_server_32_concurrent_predicts(server, face_jpeg, face_image):
    data = face_jpeg

    def one(_: int) -> httpx.Response:
        return httpx.post(server + "/predict", files={"image": ("face.jpg", data, "image/jpeg")}, timeout=120)

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(one, range(32)))
    assert [a.status_code for a in answers] == [200] * 32
    boxes = {tuple(a.json()["faces"][0]["box"]) for a in answers}
    assert boxes == {tuple(fresh_result(face_image).records[0]["box"])}, "every concurrent call gets the same, stateless answer"


def test_real_server_survives_garbage(server, face_jpeg):
    for data in (b"", b"garbage", face_jpeg[:3000], os.urandom(100_000)):
        answer = httpx.post(server + "/predict", files={"image": ("x.jpg", data)}, timeout=60)
        assert answer.status_code == 400 and "detail" in answer.json()
    raw = httpx.post(server + "/predict", content=b"--broken multipart--", timeout=60,
                     headers={"content-type": "multipart/form-data; boundary=zzz"})
    assert 400 <= raw.status_code < 500 and raw.json()["detail"]
    assert httpx.get(server + "/healthz", timeout=10).json() == {"status": "ok"}
    assert len(httpx.post(server + "/predict", files={"image": ("f.jpg", face_jpeg)}, timeout=60).json()["faces"]) == 1


def test_real_server_refuses_a_huge_body_unread(server):
    """A declared 1 GB upload is answered 413 at once, while none of its body has been sent."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=z\r\n"
                           b"Content-Length: 1000000000\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < _content_length(answer):
            chunk = connection.recv(65536)  # headers and body may come in separate packets
            assert chunk, f"connection closed after {answer!r}"
            answer += chunk
    answer = answer.decode("latin-1")
    assert answer.startswith("HTTP/1.1 413") and "the limit is" in answer, answer


def _content_length(response: bytes) -> int:
    """The Content-Length of a raw HTTP response's head (0 until the head is complete)."""
    match = re.search(rb"(?im)^content-length:\s*(\d+)", response.partition(b"\r\n\r\n")[0])
    return int(match[1]) if match else 0


@pytest.mark.parametrize("route", ["/predict", "/face"])
def test_real_server_counts_a_chunked_body(route):
    """An upload without a Content-Length (chunked, as ``curl -T -`` sends it) is counted as it
    arrives: 413 once past the route's limit, not spooled to the server's disk to the end."""
    head = (b'--z\r\nContent-Disposition: form-data; name="image"; filename="big.jpg"\r\n\r\n' if route == "/predict"
            else b"imgBase64=")

    def body():
        yield head
        for _ in range(64):  # 4 MiB, 40 times the limit
            yield b"A" * 65536

    content_type = "multipart/form-data; boundary=z" if route == "/predict" else "application/x-www-form-urlencoded"
    with Server("--max-bytes", "100000") as server:
        answer = httpx.post(server.url + route, content=body(), headers={"content-type": content_type}, timeout=60)
        # the body's count or, for /face, the form field's own limit, whichever the server reaches first
        assert answer.status_code == 413 and re.search("the limit is|maximum size", answer.json()["detail"]), answer.text
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200


def test_real_server_websocket_and_page(server, face_jpeg):
    from websockets.sync.client import connect

    with connect(server.replace("http", "ws") + "/ws") as ws:
        for _ in range(3):
            ws.send(face_jpeg)
            answer = json.loads(ws.recv(timeout=60))
        assert answer["frame"] == 2 and answer["faces"][0]["id"] == 1
    page = httpx.get(server + "/", timeout=10)
    assert page.status_code == 200 and "<canvas" in page.text


def test_port_in_use_and_public_interface_warning():
    running = Server("--host", "0.0.0.0")
    try:
        busy = run_main("serve", "--port", str(running.port), timeout=120)
        assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{running.port}" in busy.stderr
    finally:
        output = stop(running)
    assert "other machines on the network can reach this server" in output

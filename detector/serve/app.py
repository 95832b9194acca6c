"""The FastAPI app: ``create_app(config)`` builds it, so tests make their own.

The model loads once, in the lifespan handler (or before, by the command, which hands it
over), and every pipeline shares it. Image work runs on the thread pool
(sync endpoints; ``run_in_threadpool`` in the WebSocket), so one slow picture never
stalls the event loop or another connection. Bad input is a 4xx with a JSON ``detail``.
"""

from __future__ import annotations

import itertools
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import anyio

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException

from detector.classifier import EmotionClassifier
from detector.paths import bundle_dir
from detector.serve.config import ServeConfig, loopback_only
from detector.serve.engine import PipelinePool, Stream, shared_classifier
from detector.serve.images import BadImage, base64_limit, decode_base64, decode_upload
from detector.serve.schemas import (ErrorOut, FacePredictions, Health, ModelInfo, PredictOut, faces_out, most_likely_first,
                                    stream_frame)

log = logging.getLogger(__name__)

PAGE = "detector/serve/static/index.html"  # relative to the source tree and to the bundle alike
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")  # the Host headers of a server bound to loopback
ERRORS = {400: {"model": ErrorOut}, 413: {"model": ErrorOut}}
FACE_ERRORS = {**ERRORS, 422: {"model": ErrorOut, "description": "no face found"}}
FACE_FORM = {"requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
    "type": "object", "required": ["imgBase64"],
    "properties": {"imgBase64": {"type": "string", "description": "data:image/...;base64,... or bare base64"}}}}}}}


def create_app(config: ServeConfig, classifier: EmotionClassifier | None = None) -> FastAPI:
    """The server for ``config``; its pipelines are built when the app starts (lifespan) and
    closed when it stops. ``classifier``: the model already loaded by :func:`shared_classifier`
    (``main.py serve`` loads it to check it before starting); else the lifespan loads it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        model = classifier or await run_in_threadpool(shared_classifier, config.pipeline.model)
        app.state.pool = await run_in_threadpool(PipelinePool, config.pipeline, config.workers, model)
        log.info("serving %d pipelines of %s", config.workers, model.model_file.name)
        try:
            yield
        finally:
            app.state.pool.close()

    # FastAPIOffline: /docs and /redoc with their scripts served from here, not a CDN (the app works offline)
    app = FastAPIOffline(title="Emotion detector", version="1", lifespan=lifespan,
                         description="Faces and their emotions, on the desktop app's own pipeline: "
                                     "face finder (with face ids), classifier and smoother.")
    if loopback_only(config.host):  # a page on another site that resolves its name to 127.0.0.1 (DNS rebinding) is refused
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=sorted({*LOOPBACK_NAMES, config.host}))
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"])
    app.add_exception_handler(Exception, _internal_error)
    _refuse_large_bodies(app, config)
    _add_routes(app, config)
    return app


async def _internal_error(request: Request, error: Exception) -> JSONResponse:
    """A bug is logged with its traceback and answered as JSON; the server carries on."""
    log.exception("unexpected error on %s", request.url.path)
    return JSONResponse({"detail": "internal error (logged by the server)"}, status_code=500)


def _body_limits(config: ServeConfig) -> dict[str, int]:
    """The largest request body each upload route takes, in bytes: the image limit plus
    multipart framing, or the base64 form field's limit plus framing."""
    framing = 64 * 1024
    return {"/predict": config.max_bytes + framing, "/face": _form_limit(config) + framing}


def _refuse_large_bodies(app: FastAPI, config: ServeConfig) -> None:
    """Upload routes read at most their limit of body bytes: a request that declares more is
    answered 413 before any of it is read, and one without a length (chunked) is counted as it
    arrives and answered 413 once past the limit, before Starlette spools more of it to disk."""
    limits = _body_limits(config)

    class LimitBodies:
        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send) -> None:
            limit = limits.get(scope["path"]) if scope["type"] == "http" else None
            if limit is None:
                return await self.inner(scope, receive, send)
            length = dict(scope["headers"]).get(b"content-length", b"").decode("latin-1")
            if length.isdigit() and int(length) > limit:
                refusal = JSONResponse({"detail": f"request body is {length} bytes; the limit is {limit}"}, status_code=413)
                return await refusal(scope, receive, send)
            received = 0

            async def counted():
                nonlocal received
                message = await receive()
                received += len(message.get("body", b""))
                if received > limit:  # FastAPI passes an HTTPException from the body's reading on as it is
                    raise HTTPException(413, f"request body is over {limit} bytes; the limit is {limit}")
                return message

            await self.inner(scope, counted, send)

    app.add_middleware(LimitBodies)


def _form_limit(config: ServeConfig) -> int:
    """Bytes of an ``imgBase64`` form field at the image limit: form encoding may turn each
    base64 character into 3 (``%2B``), and a data URL adds its prefix; decode_base64 then checks exactly."""
    return base64_limit(config.max_bytes) * 3 + 1024


def _add_routes(app: FastAPI, config: ServeConfig) -> None:
    _add_info_routes(app)
    _add_image_routes(app, config)
    _add_stream_route(app, config)


def _add_info_routes(app: FastAPI) -> None:
    """The page, the health check and what model is served."""

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(bundle_dir() / PAGE, media_type="text/html")

    @app.get("/healthz", response_model=Health)
    def healthz() -> Health:
        return Health()

    @app.get("/model", response_model=ModelInfo)
    def model(request: Request) -> ModelInfo:
        classifier = request.app.state.pool.classifier
        card = classifier.card
        return ModelInfo(labels=list(classifier.labels), input_size=list(classifier.input_size), channels=classifier.channels,
                         backend=classifier.backend.name, model_file=Path(classifier.model_file).name, outputs=card.outputs,
                         tta=card.tta, arch=card.arch, members=card.members,
                         calibration=card.to_json().get("calibration"))


def _add_image_routes(app: FastAPI, config: ServeConfig) -> None:
    """One-shot pictures: ``/predict`` (a file) and ``/face`` (base64 in a form)."""

    @app.post("/predict", response_model=PredictOut, responses=ERRORS)
    def predict(request: Request, response: Response, image: UploadFile = File(description="any image format the app reads"),
                whole: bool = Query(False, description="classify the whole picture as one face (a pre-cropped face)")) -> PredictOut:
        started = time.perf_counter()
        picture = _decoded(lambda: decode_upload(image.file.read(config.max_bytes + 1), config))
        decoded = time.perf_counter()
        result = request.app.state.pool.predict(picture, whole=whole)
        response.headers["Server-Timing"] = _server_timing(started, decoded)
        return PredictOut(width=picture.shape[1], height=picture.shape[0], faces=faces_out(result))

    @app.post("/face", response_model=FacePredictions, responses=FACE_ERRORS, openapi_extra=FACE_FORM)
    async def face(request: Request, response: Response) -> FacePredictions:
        form = await _form(request, config)
        try:
            text = form.get("imgBase64")
        finally:
            await form.close()  # a file part (max_files=1) may have been spooled to disk
        if not isinstance(text, str) or not text:
            raise HTTPException(400, "send the image as the form field imgBase64 (a data URL or bare base64)")
        started = time.perf_counter()
        picture = await run_in_threadpool(_decoded, lambda: decode_base64(text, config))
        decoded = time.perf_counter()
        result = await run_in_threadpool(request.app.state.pool.predict, picture)
        response.headers["Server-Timing"] = _server_timing(started, decoded)
        largest = result.faces.largest()
        if largest is None:
            raise HTTPException(422, "no face found in the image")
        return FacePredictions(predictions=most_likely_first(result.records[largest]["probs"]))


def _add_stream_route(app: FastAPI, config: ServeConfig) -> None:
    """``/ws``: a pipeline per connection (on the shared model), built when it opens and
    closed when it ends; at most ``config.max_streams`` connections at once."""
    names = itertools.count(1)
    open_streams = 0  # changed on the event loop only

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        nonlocal open_streams
        if not _same_origin(websocket, config):
            await websocket.close(code=1008, reason="origin not allowed")
            return
        await websocket.accept()
        if open_streams >= config.max_streams:
            await websocket.close(code=1013, reason=f"too many connections: this server takes {config.max_streams} at once "
                                                    "(main.py serve --max-streams); try again later")
            return
        open_streams += 1
        stream = None
        try:
            model = websocket.app.state.pool.classifier
            stream = await run_in_threadpool(Stream, config.pipeline, f"connection {next(names)}", model)
            await _serve_stream(websocket, stream, config)
        except WebSocketDisconnect:
            pass
        finally:
            open_streams -= 1
            if stream is not None:
                with anyio.CancelScope(shield=True):  # a cancelled connection still stops its thread
                    await run_in_threadpool(stream.close)


async def _serve_stream(websocket: WebSocket, stream: Stream, config: ServeConfig) -> None:
    """Answer each binary frame with one JSON result, in order; a bad frame gets an
    ``{"error", "status"}`` message and the connection carries on."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is None:
            await websocket.send_json({"error": "send binary JPEG or PNG frames, not text", "status": 400})
            continue
        started = time.perf_counter()
        try:
            picture = await run_in_threadpool(decode_upload, data, config)
        except BadImage as error:
            await websocket.send_json({"error": str(error), "status": error.status})
            continue
        decode_ms = (time.perf_counter() - started) * 1000
        result = await run_in_threadpool(stream, picture)
        await websocket.send_text(stream_frame(result, decode_ms).model_dump_json())


def _server_timing(started: float, decoded: float) -> str:
    """A ``Server-Timing`` header: milliseconds spent decoding, then in the pipeline (up to now),
    so a client can tell the server's work from the transfer's."""
    now = time.perf_counter()
    return f"decode;dur={(decoded - started) * 1000:.2f}, pipeline;dur={(now - decoded) * 1000:.2f}"


def _decoded(decode):
    """Run a decode; its :class:`BadImage` becomes the HTTP error it names."""
    try:
        return decode()
    except BadImage as error:
        raise HTTPException(error.status, str(error)) from None


async def _form(request: Request, config: ServeConfig):
    """The request's form, with fields up to the image limit (Starlette's default is 1 MB).

    Raises:
        HTTPException: 413 for a field over the limit, 400 for a form that cannot be parsed.
    """
    try:
        return await request.form(max_files=1, max_fields=8, max_part_size=_form_limit(config))
    except StarletteHTTPException as error:  # Starlette turns its MultiPartException into its own 400
        if error.status_code == 413:  # the body itself is over the limit (_refuse_large_bodies)
            raise
        status = 413 if "maximum size" in str(error.detail) else 400
        raise HTTPException(status, f"unreadable form: {error.detail}") from None


def _same_origin(websocket: WebSocket, config: ServeConfig) -> bool:
    """Browsers let any page open a WebSocket anywhere: only this server's own page (or an
    origin allowed with --cors) may. Clients that are not browsers send no Origin."""
    origin = websocket.headers.get("origin")
    if origin is None or origin in config.cors_origins:
        return True
    return urlsplit(origin).netloc == websocket.headers.get("host")

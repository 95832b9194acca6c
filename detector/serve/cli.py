"""``main.py serve``: flags -> :class:`ServeConfig` -> uvicorn.

User errors (a missing model or cascade, a port in use, a bad flag) are one line and
exit code 2, raised as :class:`~detector.errors.UserError` before the server starts.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
from dataclasses import fields
from typing import TYPE_CHECKING

from detector.errors import UserError
from detector.flags import add_detection_flags, add_model_flags, add_smoothing_flag, pipeline_config
from detector.serve.config import ServeConfig, loopback_only

if TYPE_CHECKING:
    from detector.classifier import EmotionClassifier

log = logging.getLogger(__name__)

EPILOG = """\
endpoints: GET / (webcam page), POST /predict (image upload), POST /face (imgBase64 form field),
           WS /ws (binary frames in, JSON out), GET /healthz, GET /model, GET /docs (OpenAPI)
"""


def serve_parser() -> argparse.ArgumentParser:
    defaults = {f.name: f.default for f in fields(ServeConfig)}
    p = argparse.ArgumentParser(prog="main.py serve", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="A local REST API, WebSocket and webcam page on the app's own pipeline.")
    net = p.add_argument_group("server")
    net.add_argument("--host", default=defaults["host"], help=f"interface to listen on (default {defaults['host']}: this machine only)")
    net.add_argument("--port", type=int, default=defaults["port"], help=f"default {defaults['port']}")
    net.add_argument("--max-bytes", type=int, default=defaults["max_bytes"], metavar="N",
                     help=f"largest image file accepted, in bytes (default {defaults['max_bytes']})")
    net.add_argument("--max-pixels", type=int, default=defaults["max_pixels"], metavar="N",
                     help=f"largest image accepted, width x height (default {defaults['max_pixels']})")
    net.add_argument("--workers", type=int, metavar="N", help="pipelines serving /predict and /face at once (default: one per core, at most 4)")
    net.add_argument("--max-streams", type=int, default=defaults["max_streams"], metavar="N",
                     help=f"WebSocket connections at once; more are closed with code 1013 (default {defaults['max_streams']})")
    net.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                     help="let pages from ORIGIN (e.g. http://localhost:3000) call the API; repeatable (default: none)")
    net.add_argument("--no-access-log", action="store_true", help="no log line per request")
    add_model_flags(p)
    add_detection_flags(p)
    add_smoothing_flag(p)
    p.add_argument("-v", "--verbose", action="store_true", help="log model and backend details")
    return p


def serve_config(args: argparse.Namespace) -> ServeConfig:
    """Raises SettingsError for values out of range (argparse has checked the types)."""
    optional = {"workers": args.workers} if args.workers is not None else {}
    return ServeConfig(pipeline=pipeline_config(args), host=args.host, port=args.port, max_bytes=args.max_bytes,
                       max_pixels=args.max_pixels, max_streams=args.max_streams, cors_origins=tuple(args.cors), **optional)


def check_startable(config: ServeConfig) -> "EmotionClassifier":
    """What would stop the server, found before it starts: loads the model (once; the app
    is handed it) and the face detector, and tries the port.

    Raises:
        UserError: the model or the detector's files are missing or unusable (a ModelError: no labels.txt,
            a bad model card...), or the port cannot be bound.
    """
    from detector.detection import create_detector
    from detector.serve.engine import shared_classifier

    classifier = shared_classifier(config.pipeline.model)
    detection = config.pipeline.detection
    create_detector(detection.name, detection.settings).close()
    try:
        infos = socket.getaddrinfo(config.host, config.port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(infos[0][4])
    except OSError as error:
        raise UserError(f"cannot listen on {config.host}:{config.port}: {error.strerror or error}") from None
    return classifier


def limit_decoder_pixels(max_pixels: int) -> None:
    """OpenCV's decoders refuse pictures over ``max_pixels`` from their header, before unpacking
    them: the cap for formats whose header Pillow does not read (Radiance HDR, PFM, EXR...),
    which :func:`~detector.serve.images.check_declared_size` lets through. OpenCV 4.14 reads
    ``OPENCV_IO_MAX_IMAGE_PIXELS`` (``detector.imageio.PIXEL_LIMIT_ENV``, named here because
    importing that module imports cv2) once, when cv2 is imported, so this must run first."""
    if "cv2" in sys.modules:
        log.warning("OpenCV was imported before the pixel limit was set: it keeps its own limit of 2**30 pixels")
    os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(max_pixels)


def serve_main(argv: list[str]) -> int:
    args = serve_parser().parse_args(argv)
    logging.getLogger().setLevel(logging.INFO if args.verbose else logging.WARNING)
    config = serve_config(args)
    limit_decoder_pixels(config.max_pixels)  # before anything imports cv2
    classifier = check_startable(config)
    if not loopback_only(config.host):
        log.warning("listening on %s: other machines on the network can reach this server (there is no authentication)", config.host)
    import uvicorn

    from detector.serve.app import create_app

    # WebSocket frames past the image limit get a JSON 413 up to uvicorn's 16 MiB; larger ones close the socket
    ws_max_size = max(16 * 1024 * 1024, config.max_bytes + 1024)
    server = uvicorn.Server(uvicorn.Config(create_app(config, classifier), host=config.host, port=config.port, ws_max_size=ws_max_size,
                                           access_log=not args.no_access_log, log_level="info"))
    server.run()
    if not server.started:
        raise UserError("the server did not start (see the log above)")
    return 0

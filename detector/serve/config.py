"""The server's own settings (its pipeline's are a :class:`~detector.config.PipelineConfig`);
``serve_main`` fills them, ``create_app`` reads them, ``__post_init__`` checks them."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from detector.config import PipelineConfig
from detector.errors import check_settings


def default_workers() -> int:
    """Pipelines for one-shot requests: one per core, at most 4 (docs/SERVING.md measures 1, 2 and 4)."""
    return max(1, min(4, os.cpu_count() or 1))


def loopback_only(host: str) -> bool:
    """Whether ``host`` is an interface only this machine reaches (a host name other than localhost may not be)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may well resolve to a public interface
        return False


@dataclass(frozen=True)
class ServeConfig:
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)  # model, detector, identity, smoothing: as for the app
    host: str = "127.0.0.1"  # loopback only unless asked; other interfaces get a warning
    port: int = 8000
    max_bytes: int = 10 * 1024 * 1024  # largest accepted image file (bytes), before any decoding
    max_pixels: int = 40_000_000  # largest accepted image (width x height), checked after decoding
    workers: int = field(default_factory=default_workers)  # pooled pipelines for /predict and /face
    max_streams: int = 8  # WebSocket connections at once: each holds a pipeline and a face-search thread
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API (and open /ws) from other pages

    def __post_init__(self) -> None:
        check_settings(*(f"--{name.replace('_', '-')} must be 1 or more, got {getattr(self, name)}"
                         for name in ("max_bytes", "max_pixels", "workers", "max_streams") if getattr(self, name) < 1),
                       f"--port must be 0-65535, got {self.port}" if not 0 <= self.port <= 65535 else "")

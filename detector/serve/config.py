"""Every setting of the server in one place; ``serve_main`` fills it, ``create_app`` reads it."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from detector.config import AppConfig


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
    pipeline: AppConfig = field(default_factory=AppConfig)  # model, detector, cascade, smoothing: as for the app
    host: str = "127.0.0.1"  # loopback only unless asked; other interfaces get a warning
    port: int = 8000
    max_bytes: int = 10 * 1024 * 1024  # largest accepted image file (bytes), before any decoding
    max_pixels: int = 40_000_000  # largest accepted image (width x height), checked after decoding
    workers: int = field(default_factory=default_workers)  # pooled pipelines for /predict and /face
    max_streams: int = 8  # WebSocket connections at once: each holds a pipeline and a face-search thread
    cors_origins: tuple[str, ...] = ()  # browser origins allowed to call the API (and open /ws) from other pages

    def __post_init__(self) -> None:
        if min(self.max_bytes, self.max_pixels, self.workers, self.max_streams) < 1:
            raise ValueError(f"ServeConfig: max_bytes, max_pixels, workers and max_streams must be >= 1, got "
                             f"{self.max_bytes}, {self.max_pixels}, {self.workers}, {self.max_streams}")

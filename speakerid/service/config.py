"""The service's settings, with their defaults in one place (the CLI's ``serve`` options read them
from here). uvicorn starts every worker by importing :func:`speakerid.service.create_app`, so a
config travels to the workers as JSON in one environment variable, ``SPEAKERID_SERVICE``.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass

from speakerid.base import validate
from speakerid.base.errors import UsageError

ENV = "SPEAKERID_SERVICE"


@dataclass(frozen=True)
class ServiceConfig:
    home: str | None = None  # the store folder, or None for the default
    store: str | None = None  # a postgresql:// URL (or folder) instead of home
    model: str | None = None
    device: str = "cpu"
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    max_upload_mb: float = 20.0
    max_seconds: float = 120.0
    rate_limit: float = 10.0  # requests a second per key (per client address without a key)
    rate_burst: int = 20
    require_keys: bool = False  # refuse requests without a key even before any key exists
    max_stream_seconds: float = 300.0
    idle_seconds: float = 30.0  # a connection or stream that sends nothing this long is closed
    header_seconds: float = 10.0  # a request's headers must be complete this long after the connection is free
    max_streams: int = 16
    access_log: bool = True  # one line per request on stderr: address, method, path, status, time, key id
    trusted_proxy: str | None = None  # the reverse proxy whose X-Forwarded-For is believed (none by default)

    def __post_init__(self) -> None:
        validate.count("port", self.port, low=1, high=65535)
        validate.count("workers", self.workers, low=1, high=64)
        validate.number("max upload (MB)", self.max_upload_mb, low=0.001, high=4096)
        validate.seconds("max seconds", self.max_seconds, low=0.1, high=24 * 3600)
        validate.number("rate limit", self.rate_limit, low=0, high=1e6)
        validate.count("rate burst", self.rate_burst, low=1, high=1_000_000)
        validate.seconds("max stream seconds", self.max_stream_seconds, low=1, high=24 * 3600)
        validate.seconds("idle seconds", self.idle_seconds, low=1, high=3600)
        validate.seconds("header seconds", self.header_seconds, low=1, high=3600)
        validate.count("max streams", self.max_streams, low=1, high=10_000)
        if self.trusted_proxy is not None:
            try:
                ipaddress.ip_address(self.trusted_proxy)
            except ValueError:
                raise UsageError(
                    f"--trusted-proxy must be the proxy's IP address, got {self.trusted_proxy!r}"
                ) from None

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def open_to_network(self) -> bool:
        return not is_loopback(self.host)

    def to_env(self) -> dict[str, str]:
        return {ENV: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls) -> ServiceConfig:
        raw = os.environ.get(ENV)
        return cls(**json.loads(raw)) if raw else cls()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

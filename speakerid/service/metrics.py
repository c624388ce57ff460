"""Prometheus counters for the service: requests by route and status, time spent, speakers."""

from __future__ import annotations

import threading
from collections import defaultdict


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.seconds: dict[str, float] = defaultdict(float)

    def observe(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, status)] += 1
            self.seconds[route] += seconds

    def render(self, speakers: int) -> str:
        lines = [
            "# HELP speakerid_requests_total HTTP requests by route and status.",
            "# TYPE speakerid_requests_total counter",
        ]
        with self._lock:
            for (route, status), n in sorted(self.requests.items()):
                lines.append(f'speakerid_requests_total{{route="{route}",status="{status}"}} {n}')
            lines += [
                "# HELP speakerid_request_seconds_total Time spent answering, by route.",
                "# TYPE speakerid_request_seconds_total counter",
            ]
            for route, s in sorted(self.seconds.items()):
                lines.append(f'speakerid_request_seconds_total{{route="{route}"}} {s:.6f}')
        lines += [
            "# HELP speakerid_speakers Enrolled speakers.",
            "# TYPE speakerid_speakers gauge",
            f"speakerid_speakers {speakers}",
        ]
        return "\n".join(lines) + "\n"

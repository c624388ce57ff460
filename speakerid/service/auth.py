"""Who may call what: API keys (admin, client), per-key rate limits, and a brake on guessing keys.

Whether a key is needed never depends on whether an active key exists right now: it is needed
once the store has ever had a key (revoked keys stay as rows), when the server was started with
``--require-keys``, and always on an address other than loopback.
"""

from __future__ import annotations

import threading
import time

from fastapi import Depends, HTTPException, Request

from speakerid.apps.keys import authenticate
from speakerid.service.config import ServiceConfig
from store import ApiKey, Store

BAD_KEY_BURST = 10  # wrong keys a client address may send ...
BAD_KEY_RATE = 10 / 60  # ... and then one every 6 s. A right key is never refused for them: the brake
#                          limits guesses, not the kiosks behind the same address (a key holds 256
#                          random bits; the brake keeps the noise down, the key's length keeps it safe)


class RateLimiter:
    """A token bucket per caller: ``rate`` requests a second on average, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int):
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, who: str, *, spend: bool = True) -> bool:
        """Whether ``who`` has a token left; ``spend=False`` only looks."""
        if self.rate <= 0:
            return True
        with self._lock:
            now = time.monotonic()
            tokens, last = self._buckets.get(who, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            allowed = tokens >= 1
            if spend:
                self._buckets[who] = (tokens - 1 if allowed else tokens, now)
                if len(self._buckets) > 100_000:  # forget the oldest callers rather than grow without end
                    for key in sorted(self._buckets, key=lambda k: self._buckets[k][1])[:50_000]:
                        del self._buckets[key]
            return allowed


def presented_key(headers) -> str:
    """The key from ``Authorization: Bearer <key>`` or ``X-API-Key``; never from the URL."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return (headers.get("x-api-key") or "").strip()


class Gate:
    def __init__(self, store: Store, config: ServiceConfig):
        self.store = store
        self.limiter = RateLimiter(config.rate_limit, config.rate_burst)
        self.bad_keys = RateLimiter(BAD_KEY_RATE, BAD_KEY_BURST)
        self._required = config.require_keys or config.open_to_network

    @property
    def required(self) -> bool:
        if not self._required and self.store.policy.ever_had_keys():
            self._required = True  # once keys existed, for good
        return self._required

    def admit(self, token: str, client: str, role: str) -> ApiKey | None:
        """The caller's key (``None`` on an open loopback server), or an HTTP 401/403/429."""
        key = None
        if token or self.required:
            if not token:
                raise HTTPException(
                    401, "missing API key (Authorization: Bearer <key>)", headers={"WWW-Authenticate": "Bearer"}
                )
            key = authenticate(self.store, token)
            if key is None:  # a wrong key: these, and only these, are limited per address
                if not self.bad_keys.allow(client):
                    raise HTTPException(
                        429, "too many wrong API keys from this address; wait a minute", headers={"Retry-After": "6"}
                    )
                raise HTTPException(401, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
            if role == "admin" and key.role != "admin":
                raise HTTPException(403, f"this needs an admin key; key {key.id} is a {key.role} key")
        if not self.limiter.allow(key.id if key else f"addr:{client}"):
            raise HTTPException(429, "rate limit exceeded; slow down", headers={"Retry-After": "1"})
        return key


def caller(gate: Gate, role: str):
    """A FastAPI dependency admitting callers with ``role`` (``client`` or ``admin``): their key, or None."""

    def admit(request: Request) -> ApiKey | None:
        key = gate.admit(presented_key(request.headers), request.client.host if request.client else "?", role)
        request.state.key_id = key.id if key else None  # for the access log: which key, never the key
        return key

    return Depends(admit)

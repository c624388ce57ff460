"""API keys for the HTTP service: shown once, stored hashed, revocable.

A key reads ``sk_<id>_<secret>``: the id finds the row, the secret is checked against its sha256
(secrets are 32 random bytes, so a fast hash is enough). The store keeps the rows; this module
makes secrets and checks them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from speakerid.base.errors import UsageError
from store import ApiKey, Store

ROLES = ("admin", "client")
MAX_LABEL = 100


def create_key(store: Store, role: str, name: str = "") -> tuple[str, ApiKey]:
    """A new key: ``(the secret key, its record)``. The secret is not stored and cannot be shown again."""
    if role not in ROLES:
        raise UsageError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    name = (name or "").strip()
    if len(name) > MAX_LABEL or any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise UsageError(f"key name must be up to {MAX_LABEL} printable characters, got {name[:40]!r}")
    key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    return f"sk_{key_id}_{secret}", store.policy.add_key(key_id, _hash(secret), role, name)


def authenticate(store: Store, presented: str) -> ApiKey | None:
    """The live key matching ``presented``, or None (unknown, malformed, wrong secret or revoked)."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "sk" or not parts[1].isalnum():
        return None
    found = store.policy.key(parts[1])
    if found is None:
        return None
    record, stored = found
    if not hmac.compare_digest(stored, _hash(parts[2])) or record.revoked is not None:
        return None
    return record


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()

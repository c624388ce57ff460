"""API keys for the HTTP service: shown once, stored hashed, revocable.

A key reads ``sk_<id>_<secret>``: the id finds the row, the secret is checked against its
sha256 (secrets are 32 random bytes, so a fast hash is enough).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from store import Store
from store.schema import now

from .errors import SpeakerIDError

ROLES = ("admin", "client")


class ApiKeyError(SpeakerIDError):
    """A key operation that cannot be done (unknown id, bad role)."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    role: str
    name: str
    created: str
    revoked: str | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def create_key(store: Store, role: str, name: str = "") -> tuple[str, ApiKey]:
    """A new key: ``(the secret key, its record)``. The secret is not stored and cannot be shown again."""
    if role not in ROLES:
        raise ApiKeyError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    key_id = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    record = ApiKey(id=key_id, role=role, name=name, created=now(), revoked=None)
    with store.transaction() as db:
        db["api_keys"].insert({"id": key_id, "hash": _hash(secret), "role": role, "name": name,
                               "created": record.created, "revoked": None})
        store.log_event("key_create", key_id=key_id, role=role)
    return f"sk_{key_id}_{secret}", record


def list_keys(store: Store) -> list[ApiKey]:
    return [ApiKey(r["id"], r["role"], r["name"], r["created"], r["revoked"])
            for r in store.db["api_keys"].rows_where(order_by="created")]


def revoke_key(store: Store, key_id: str) -> None:
    with store.transaction() as db:
        if not db.execute("SELECT 1 FROM api_keys WHERE id = ?", [key_id]).fetchone():
            raise ApiKeyError(f"no API key with id {key_id!r}")
        db.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL", [now(), key_id])
        store.log_event("key_revoke", key_id=key_id)


def active_keys_exist(store: Store) -> bool:
    return store.db.execute("SELECT 1 FROM api_keys WHERE revoked IS NULL LIMIT 1").fetchone() is not None


def authenticate(store: Store, presented: str) -> ApiKey | None:
    """The live key matching ``presented``, or None (unknown, malformed, wrong secret or revoked)."""
    parts = presented.split("_", 2)
    if len(parts) != 3 or parts[0] != "sk":
        return None
    row = store.db.execute("SELECT id, hash, role, name, created, revoked FROM api_keys WHERE id = ?", [parts[1]]).fetchone()
    if row is None or not hmac.compare_digest(row[1], _hash(parts[2])) or row[5] is not None:
        return None
    return ApiKey(row[0], row[2], row[3], row[4], row[5])


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()

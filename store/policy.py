"""API keys, resources, grants and groups: the store's :class:`~store.roles.AccessPolicy` role over SQL.

The same SQL on SQLite and PostgreSQL. Grants and group members point at speaker rows, so erasing
a speaker erases them, and a group (``@staff``) can never be mistaken for a speaker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import GrantNotFoundError, KeyNotFoundError, SpeakerNotFoundError, UnknownResourceError
from .migrate import now
from .names import group_name, name_key, resource_name, speaker_name
from .names import principal as parse_principal
from .records import ApiKey, Resource
from .roles import AccessPolicy
from .speakers import SQLVoiceprints

if TYPE_CHECKING:
    from .sql_store import SQLStore


class SQLAccessPolicy(AccessPolicy):
    def __init__(self, core: SQLStore):
        self._core, self._db = core, core._db
        self._speaker_row = SQLVoiceprints._speaker_row

    # -- API keys ----------------------------------------------------------------------------------
    def add_key(self, key_id: str, secret_hash: str, role: str, name: str = "") -> ApiKey:
        record = ApiKey(id=key_id, role=role, name=name, created=now(), revoked=None)
        with self._db.write() as tx:
            tx.execute(
                "INSERT INTO api_keys (id, hash, role, name, created, revoked) VALUES (?, ?, ?, ?, ?, NULL)",
                [key_id, secret_hash, role, name, record.created],
            )
            self._core._event(tx, "key_create", None, key_id=key_id, role=role)
        return record

    def key(self, key_id: str) -> tuple[ApiKey, str] | None:
        row = self._db.query("SELECT id, role, name, created, revoked, hash FROM api_keys WHERE id = ?", [key_id])
        return (ApiKey(*row[0][:5]), row[0][5]) if row else None

    def keys(self) -> list[ApiKey]:
        return [
            ApiKey(*r)
            for r in self._db.query("SELECT id, role, name, created, revoked FROM api_keys ORDER BY created, id")
        ]

    def revoke_key(self, key_id: str) -> None:
        with self._db.write() as tx:
            if tx.one("SELECT 1 FROM api_keys WHERE id = ?", [key_id]) is None:
                raise KeyNotFoundError(key_id)
            tx.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS NULL", [now(), key_id])
            self._core._event(tx, "key_revoke", None, key_id=key_id)

    def ever_had_keys(self) -> bool:
        return self._db.scalar("SELECT 1 FROM api_keys LIMIT 1") is not None

    # -- resources, grants, groups ---------------------------------------------------------------
    def grant(self, principal: str, resource: str) -> None:
        kind, name = parse_principal(principal)
        resource = resource_name(resource)
        with self._db.write() as tx:
            self._ensure_resource(tx, resource)
            if kind == "group":
                tx.execute(
                    "INSERT INTO grants (resource, speaker_id, grp, created) VALUES (?, NULL, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    [resource, name_key(name), now()],
                )
                shown = "@" + name_key(name)
            else:
                row = self._speaker_row(tx, name)
                if row is None:
                    raise SpeakerNotFoundError(name)
                tx.execute(
                    "INSERT INTO grants (resource, speaker_id, grp, created) VALUES (?, ?, NULL, ?) "
                    "ON CONFLICT DO NOTHING",
                    [resource, row[0], now()],
                )
                shown = row[1]
            self._core._event(tx, "grant", None if kind == "group" else shown, resource=resource, principal=shown)

    def revoke_grant(self, principal: str, resource: str) -> None:
        kind, name = parse_principal(principal)
        resource = resource_name(resource)
        with self._db.write() as tx:
            if kind == "group":
                changed = tx.execute("DELETE FROM grants WHERE resource = ? AND grp = ?", [resource, name_key(name)])
            else:
                row = self._speaker_row(tx, name)
                changed = (
                    0
                    if row is None
                    else tx.execute("DELETE FROM grants WHERE resource = ? AND speaker_id = ?", [resource, row[0]])
                )
            if not changed:
                raise GrantNotFoundError(f"{principal} has no grant on {resource}")
            self._core._event(tx, "revoke", None, resource=resource, principal=principal)

    def set_resource_limits(self, resource: str, *, threshold: float | None = None, far: float | None = None) -> None:
        resource = resource_name(resource)
        with self._db.write() as tx:
            self._ensure_resource(tx, resource)
            tx.execute("UPDATE resources SET threshold = ?, far = ? WHERE name = ?", [threshold, far, resource])
            self._core._event(tx, "resource_limits", None, resource=resource, threshold=threshold, far=far)

    def resource(self, name: str) -> Resource:
        name = resource_name(name)
        with self._db.read() as tx:
            row = tx.one("SELECT name, threshold, far, created FROM resources WHERE name = ?", [name])
            if row is None:
                raise UnknownResourceError(name)
            return self._resource(tx, row)

    def resources(self) -> list[Resource]:
        with self._db.read() as tx:
            rows = tx.all("SELECT name, threshold, far, created FROM resources ORDER BY name")
            return [self._resource(tx, row) for row in rows]

    def add_to_group(self, group: str, speaker: str) -> None:
        group, speaker = name_key(group_name(group)), speaker_name(speaker)
        with self._db.write() as tx:
            row = self._speaker_row(tx, speaker)
            if row is None:
                raise SpeakerNotFoundError(speaker)
            tx.execute(
                "INSERT INTO group_members (grp, speaker_id) VALUES (?, ?) ON CONFLICT DO NOTHING", [group, row[0]]
            )
            self._core._event(tx, "group_add", row[1], group=group)

    def remove_from_group(self, group: str, speaker: str) -> bool:
        group, speaker = name_key(group_name(group)), speaker_name(speaker)
        with self._db.write() as tx:
            row = self._speaker_row(tx, speaker)
            if row is None:
                raise SpeakerNotFoundError(speaker)
            changed = tx.execute("DELETE FROM group_members WHERE grp = ? AND speaker_id = ?", [group, row[0]])
            if changed:
                self._core._event(tx, "group_remove", row[1], group=group)
        return bool(changed)

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for grp, speaker in self._db.query(
            "SELECT g.grp, s.name FROM group_members g JOIN speakers s ON s.id = g.speaker_id ORDER BY g.grp, s.name"
        ):
            out.setdefault(grp, []).append(speaker)
        return out

    def allowed(self, speaker: str, resource: str) -> bool:
        speaker, resource = speaker_name(speaker), resource_name(resource)
        with self._db.read() as tx:
            row = self._speaker_row(tx, speaker)
            if row is None:
                return False
            return (
                tx.one(
                    """SELECT 1 FROM grants WHERE resource = ? AND (speaker_id = ? OR grp IN
                                 (SELECT grp FROM group_members WHERE speaker_id = ?)) LIMIT 1""",
                    [resource, row[0], row[0]],
                )
                is not None
            )

    # -- helpers -------------------------------------------------------------------------------------
    @staticmethod
    def _ensure_resource(tx, resource: str) -> None:
        tx.execute(
            "INSERT INTO resources (name, threshold, far, created) VALUES (?, NULL, NULL, ?) ON CONFLICT DO NOTHING",
            [resource, now()],
        )

    @staticmethod
    def _resource(tx, row: tuple) -> Resource:
        name = row[0]
        people = [
            r[0]
            for r in tx.all(
                "SELECT s.name FROM grants g JOIN speakers s ON s.id = g.speaker_id "
                "WHERE g.resource = ? ORDER BY s.name",
                [name],
            )
        ]
        groups = [
            "@" + r[0]
            for r in tx.all("SELECT grp FROM grants WHERE resource = ? AND grp IS NOT NULL ORDER BY grp", [name])
        ]
        return Resource(name=name, threshold=row[1], far=row[2], allowed=groups + people, created=row[3])

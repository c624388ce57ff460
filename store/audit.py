"""Lockout attempts, the audit log of access decisions and the change log: the store's
:class:`~store.roles.AuditLog` role over SQL (the same SQL on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .database import Tx
from .names import name_key
from .records import Decision, Event
from .roles import AuditLog
from .schema import INSERT_DECISION

if TYPE_CHECKING:
    from .sql_store import SQLStore

MAX_ATTEMPTS_READ = 1_000


class SQLAuditLog(AuditLog):
    def __init__(self, core: SQLStore):
        self._core, self._db = core, core._db

    # -- lockout -----------------------------------------------------------------------------------
    def begin_attempt(self, subject: str, *, attempts: int, window_seconds: float) -> tuple[int | None, str | None]:
        stamp = datetime.now(UTC)
        since = (stamp - timedelta(seconds=window_seconds)).isoformat(timespec="milliseconds")
        with self._db.write() as tx:
            self._db.lock(tx, "attempt:" + subject)
            tx.execute("DELETE FROM attempts WHERE subject = ? AND started < ?", [subject, since])
            counted: list[str] = []
            for started, outcome in tx.all(
                "SELECT started, outcome FROM attempts WHERE subject = ? ORDER BY id DESC LIMIT ?",
                [subject, MAX_ATTEMPTS_READ],
            ):
                if outcome == "allow":
                    break
                if outcome != "refused":  # a denial, or one still being scored
                    counted.append(started)
            if len(counted) >= attempts:
                until = datetime.fromisoformat(counted[0]) + timedelta(seconds=window_seconds)
                return None, until.isoformat(timespec="seconds")
            attempt = tx.value(
                "INSERT INTO attempts (subject, started, outcome) VALUES (?, ?, NULL) RETURNING id",
                [subject, stamp.isoformat(timespec="milliseconds")],
            )
        return int(attempt), None

    def finish_attempt(self, attempt_id: int, outcome: str) -> None:
        with self._db.write() as tx:
            tx.execute("UPDATE attempts SET outcome = ? WHERE id = ?", [outcome, attempt_id])

    # -- the audit log ------------------------------------------------------------------------------
    def record_decision(self, decision: Decision) -> None:
        d = decision
        with self._db.write() as tx:
            tx.execute(
                INSERT_DECISION,
                [
                    d.decision_id,
                    d.time,
                    d.key_id,
                    d.resource,
                    d.claim,
                    d.mode,
                    bool(d.allow),
                    d.reason,
                    d.speaker,
                    d.score,
                    d.threshold,
                ],
            )

    def decisions(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        resource: str | None = None,
        allow: bool | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[Decision]:
        where, params = [], []
        for clause, value in (
            ("time >= ?", since),
            ("time < ?", until),
            ("resource = ?", resource),
            ("allow = ?", allow),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = (
            "SELECT decision_id, time, key_id, resource, claim, mode, allow, reason, speaker, score, threshold "
            "FROM audit" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        )
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [limit if limit is not None else 2**62, offset]
        return [Decision(*r[:6], bool(r[6]), *r[7:]) for r in self._db.query(sql, params)]

    # -- the change log ------------------------------------------------------------------------------
    def log_event(self, kind: str, speaker: str | None = None, /, **detail: Any) -> None:
        with self._db.write() as tx:
            self._core._event(tx, kind, speaker, **detail)

    def events(self, since: str | None = None, kind: str | None = None) -> list[Event]:
        where, params = [], []
        if since:
            where.append("time >= ?")
            params.append(since)
        if kind:
            where.append("kind = ?")
            params.append(kind)
        sql = "SELECT time, kind, speaker, detail FROM events" + (" WHERE " + " AND ".join(where) if where else "")
        return [Event(t, k, s, json.loads(d)) for t, k, s, d in self._db.query(sql + " ORDER BY id", params)]


def forget_name(tx: Tx, name: str, alias: str) -> None:
    """Inside the write that erases ``name``: every place the audit log and the change log keep
    it (the speaker and claim columns, a denial's reason, a grant's principal) says ``alias``
    instead, and its lockout attempts go. Claims are matched by name identity (``ALICE`` is alice)."""
    key = name_key(name)
    claims = [c for (c,) in tx.all("SELECT DISTINCT claim FROM audit WHERE claim IS NOT NULL") if name_key(c) == key]
    for spelled in {name, *claims}:
        tx.execute(
            "UPDATE audit SET reason = REPLACE(reason, ?, ?) WHERE speaker = ? OR claim = ?",
            [spelled, alias, spelled, spelled],
        )
        tx.execute("UPDATE audit SET claim = ? WHERE claim = ?", [alias, spelled])
    tx.execute("UPDATE audit SET speaker = ? WHERE speaker = ?", [alias, name])
    tx.execute("DELETE FROM attempts WHERE subject = ?", [f"claim:{key}"])  # a lockout of a name that is gone
    tx.execute("UPDATE events SET speaker = ? WHERE speaker = ?", [alias, name])
    for event_id, detail in tx.all("SELECT id, detail FROM events WHERE kind IN ('grant', 'revoke')"):
        data = json.loads(detail)
        principal = data.get("principal")
        if isinstance(principal, str) and not principal.startswith("@") and name_key(principal) == key:
            data["principal"] = alias
            tx.execute("UPDATE events SET detail = ? WHERE id = ?", [json.dumps(data), event_id])

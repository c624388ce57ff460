"""Access control by voice: who may open which door, phone line or app, and a record of every decision.

A resource lists the speakers (or ``@groups``) allowed through it and may carry its own, stricter
threshold. A check either verifies a claimed identity or identifies the speaker, then asks
whether that speaker is allowed. After ``lockout_attempts`` consecutive denials for one claimed
identity within ``lockout_seconds``, that identity is locked out until the window has passed.
Every decision lands in the audit log (time, key, resource, claim, result, score; never audio).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from store import SpeakerNotFoundError, Store
from store.schema import now

from .api import SpeakerID
from .audio import AudioInput
from .errors import SpeakerIDError

# Stricter than identification's 0.45: aimed at <= 0.1 % false accepts. On mini-voxceleb1 the
# highest non-target profile score is 0.383 and the lowest target score 0.599.
DEFAULT_ACCESS_THRESHOLD = 0.55
DEFAULT_LOCKOUT_ATTEMPTS = 5
DEFAULT_LOCKOUT_SECONDS = 300.0


class AccessError(SpeakerIDError):
    """An access-control request that cannot be carried out (unknown resource, bad name)."""


@dataclass(frozen=True)
class AccessDecision:
    allow: bool
    reason: str
    speaker: str | None
    score: float | None
    threshold: float
    decision_id: str
    resource: str
    claim: str | None

    def to_dict(self) -> dict:
        return {"allow": self.allow, "reason": self.reason, "speaker": self.speaker,
                "score": None if self.score is None else round(self.score, 6), "threshold": self.threshold,
                "decision_id": self.decision_id, "resource": self.resource, "claim": self.claim}


class AccessControl:
    def __init__(self, sid: SpeakerID):
        self.sid = sid
        self.store: Store = sid.store

    # -- policy ----------------------------------------------------------------------------
    def grant(self, principal: str, resource: str) -> None:
        """Allow a speaker (``alice``) or a group (``@staff``) through ``resource``, creating it if new."""
        principal = self._principal(principal)
        with self.store.transaction() as db:
            db.execute("INSERT OR IGNORE INTO resources (name, threshold, created) VALUES (?, NULL, ?)", [resource, now()])
            db.execute("INSERT OR IGNORE INTO grants (resource, principal, created) VALUES (?, ?, ?)",
                       [resource, principal, now()])
            self.store.log_event("grant", principal if not principal.startswith("@") else None,
                                 resource=resource, principal=principal)

    def revoke(self, principal: str, resource: str) -> None:
        with self.store.transaction() as db:
            cur = db.execute("DELETE FROM grants WHERE resource = ? AND principal = ?", [resource, principal])
            if cur.rowcount == 0:
                raise AccessError(f"{principal} has no grant on {resource}")
            self.store.log_event("revoke", None, resource=resource, principal=principal)

    def set_threshold(self, resource: str, threshold: float | None) -> None:
        if threshold is not None and not -1 <= threshold <= 1:
            raise AccessError("a cosine threshold lies between -1 and 1")
        with self.store.transaction() as db:
            db.execute("INSERT OR IGNORE INTO resources (name, threshold, created) VALUES (?, NULL, ?)", [resource, now()])
            db.execute("UPDATE resources SET threshold = ? WHERE name = ?", [threshold, resource])
            self.store.log_event("resource_threshold", None, resource=resource, threshold=threshold)

    def add_to_group(self, group: str, speaker: str) -> None:
        if speaker not in self.store:
            raise SpeakerNotFoundError(speaker)
        with self.store.transaction() as db:
            db.execute("INSERT OR IGNORE INTO group_members (grp, speaker) VALUES (?, ?)", [group.lstrip("@"), speaker])

    def remove_from_group(self, group: str, speaker: str) -> None:
        with self.store.transaction() as db:
            db.execute("DELETE FROM group_members WHERE grp = ? AND speaker = ?", [group.lstrip("@"), speaker])

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for grp, speaker in self.store.db.execute("SELECT grp, speaker FROM group_members ORDER BY grp, speaker"):
            out.setdefault(grp, []).append(speaker)
        return out

    def resources(self) -> list[dict]:
        rows = self.store.db.execute("SELECT name, threshold FROM resources ORDER BY name").fetchall()
        return [{"resource": name, "threshold": threshold if threshold is not None else self.default_threshold,
                 "allowed": [p for (p,) in self.store.db.execute(
                     "SELECT principal FROM grants WHERE resource = ? ORDER BY principal", [name])]}
                for name, threshold in rows]

    @property
    def default_threshold(self) -> float:
        return float(self.store.setting("access.threshold", DEFAULT_ACCESS_THRESHOLD))

    @property
    def lockout(self) -> tuple[int, float]:
        return (int(self.store.setting("access.lockout_attempts", DEFAULT_LOCKOUT_ATTEMPTS)),
                float(self.store.setting("access.lockout_seconds", DEFAULT_LOCKOUT_SECONDS)))

    def set_lockout(self, attempts: int, seconds: float) -> None:
        if attempts < 1 or seconds <= 0:
            raise AccessError("lockout needs at least 1 attempt and a positive window")
        self.store.set_setting("access.lockout_attempts", int(attempts))
        self.store.set_setting("access.lockout_seconds", float(seconds))

    # -- decisions -------------------------------------------------------------------------
    def check(self, resource: str, audio: AudioInput, claim: str | None = None, *, key_id: str | None = None,
              name: str | None = None) -> AccessDecision:
        """Allow or deny ``audio`` through ``resource``; every outcome is audited."""
        threshold = self._threshold(resource)
        decision_id = uuid.uuid4().hex
        if claim is not None:
            locked_until = self.locked_until(claim)
            if locked_until is not None:
                return self._record(AccessDecision(False, f"locked out until {locked_until}", None, None, threshold,
                                                   decision_id, resource, claim), key_id)
            if claim not in self.store:
                return self._record(AccessDecision(False, "claimed speaker is not enrolled", None, None, threshold,
                                                   decision_id, resource, claim), key_id)
            verdict = self.sid.verify(claim, audio, threshold=threshold, name=name)
            speaker, score = claim, verdict.score
            matched, reason = verdict.accepted, "voice does not match the claimed speaker"
        else:
            found = self.sid.identify(audio, threshold=threshold, name=name)
            speaker, score = found.speaker, found.score
            matched, reason = speaker is not None, "voice not recognised"
        if not matched:
            return self._record(AccessDecision(False, reason, None, score, threshold, decision_id, resource, claim), key_id)
        if not self.allowed(speaker, resource):
            return self._record(AccessDecision(False, f"{speaker} is not allowed on {resource}", speaker, score,
                                               threshold, decision_id, resource, claim), key_id)
        return self._record(AccessDecision(True, "allowed", speaker, score, threshold, decision_id, resource, claim), key_id)

    def allowed(self, speaker: str, resource: str) -> bool:
        row = self.store.db.execute(
            """SELECT 1 FROM grants WHERE resource = ? AND (principal = ? OR principal IN
                   (SELECT '@' || grp FROM group_members WHERE speaker = ?)) LIMIT 1""",
            [resource, speaker, speaker]).fetchone()
        return row is not None

    def locked_until(self, claim: str) -> str | None:
        """When ``claim`` is locked out: the time it is released; else None."""
        attempts, seconds = self.lockout
        since = (datetime.now(timezone.utc) - timedelta(seconds=seconds)).isoformat(timespec="milliseconds")
        recent = self.store.db.execute(
            "SELECT time, detail FROM events WHERE kind = 'access' AND speaker = ? AND time >= ? ORDER BY id DESC LIMIT ?",
            [f"claim:{claim}", since, attempts]).fetchall()
        if len(recent) < attempts or any(json.loads(detail)["allow"] for _, detail in recent):
            return None
        last = datetime.fromisoformat(recent[0][0])
        return (last + timedelta(seconds=seconds)).isoformat(timespec="seconds")

    def audit(self, since: str | None = None) -> list[dict]:
        return [{"time": e["time"], **e["detail"]} for e in self.store.events(since=since, kind="access")]

    # -- internals -------------------------------------------------------------------------
    def _threshold(self, resource: str) -> float:
        row = self.store.db.execute("SELECT threshold FROM resources WHERE name = ?", [resource]).fetchone()
        if row is None:
            raise AccessError(f"unknown resource {resource!r}; grant someone access to it first")
        return float(row[0]) if row[0] is not None else self.default_threshold

    def _principal(self, principal: str) -> str:
        if principal.startswith("@"):
            if len(principal) < 2:
                raise AccessError("a group name follows the @")
            return principal
        if principal not in self.store:
            raise SpeakerNotFoundError(principal)
        return principal

    def _record(self, decision: AccessDecision, key_id: str | None) -> AccessDecision:
        # The claim (or "-") is the events row's speaker, so lockout counts are one indexed query.
        self.store.log_event("access", f"claim:{decision.claim}" if decision.claim else None,
                             key_id=key_id, **decision.to_dict())
        return decision

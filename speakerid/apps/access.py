"""Access control by voice: who may open which door, phone line or app, and a record of every decision.

A resource lists the speakers (or ``@groups``) allowed through it and may carry its own, stricter
threshold. A check either verifies a claimed identity or identifies the speaker, then asks whether
that speaker is allowed. Guessing is limited: after ``attempts`` denials within ``seconds`` a
claimed identity is locked out, and so is identification at one resource by one caller (a key or
a client address), until the window has passed. The attempt is reserved before the voice is
scored, in one transaction, so parallel requests cannot all be scored. Every decision — refused
audio and unknown resources too — lands in the audit log (time, key, resource, claim, result,
score; never audio).
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from speakerid.base import validate
from speakerid.base.text import printable
from speakerid.decide import score_calibration
from speakerid.decide.decider import DEFAULT_ACCESS_FAR, Verification
from speakerid.flows.streaming import Event
from speakerid.voice.audio import AudioInput
from store import Decision, Resource, SpeakerIDError, name_key, resource_name, speaker_name

if TYPE_CHECKING:  # the facade hands itself in; apps sit below it
    from speakerid.api import SpeakerID

DEFAULT_LOCKOUT_ATTEMPTS = 5
DEFAULT_LOCKOUT_SECONDS = 300.0
MAX_LOCKOUT_ATTEMPTS = 1000
MAX_LOCKOUT_SECONDS = 30 * 24 * 3600.0
VERIFY_RESOURCE = "(verify)"  # how the audit log names POST /v1/verify by a client key


class AccessControl:
    """Access decisions over a :class:`SpeakerID`; the policy itself lives in its store."""

    def __init__(self, sid: SpeakerID):
        self.sid = sid
        self.store = sid.store

    # -- policy ------------------------------------------------------------------------------------
    def grant(self, principal: str, resource: str) -> None:
        """Allow a speaker (``alice``) or a group (``@staff``) through ``resource``, creating it if new."""
        self.store.policy.grant(principal, resource)

    def revoke(self, principal: str, resource: str) -> None:
        self.store.policy.revoke_grant(principal, resource)

    def set_threshold(self, resource: str, threshold: float | None) -> None:
        """A resource's own cosine threshold (``None``: the store's access default)."""
        self.store.policy.set_resource_limits(
            resource, threshold=None if threshold is None else validate.threshold(threshold)
        )

    def set_far(self, resource: str, far: float | None) -> None:
        """A resource's own false-accept target (``None``: the default, 0.1 %); replaces a threshold."""
        self.store.policy.set_resource_limits(resource, far=None if far is None else validate.far(far))

    def add_to_group(self, group: str, speaker: str) -> None:
        self.store.policy.add_to_group(group, speaker)

    def remove_from_group(self, group: str, speaker: str) -> bool:
        return self.store.policy.remove_from_group(group, speaker)

    def groups(self) -> dict[str, list[str]]:
        return self.store.policy.groups()

    def resources(self) -> list[dict]:
        return [self._describe(r) for r in self.store.policy.resources()]

    def _describe(self, resource: Resource) -> dict:
        far = None if resource.threshold is not None else resource.far or DEFAULT_ACCESS_FAR
        return {
            "resource": resource.name,
            "threshold": self.threshold_of(resource),
            "far": far,
            "allowed": resource.allowed,
        }

    def threshold_of(self, resource: Resource, *, claim: bool = True) -> float:
        """The cosine a voice must reach at ``resource`` (the decider's rule: :meth:`Decider.door_threshold`)."""
        return self.sid.decider.door_threshold(resource, claim=claim)

    @property
    def lockout(self) -> tuple[int, float]:
        return (
            int(self.store.settings.get("access.lockout_attempts", DEFAULT_LOCKOUT_ATTEMPTS)),
            float(self.store.settings.get("access.lockout_seconds", DEFAULT_LOCKOUT_SECONDS)),
        )

    def set_lockout(self, attempts: int, seconds: float) -> None:
        attempts = validate.count("lockout attempts", attempts, low=1, high=MAX_LOCKOUT_ATTEMPTS)
        seconds = validate.seconds("lockout window", seconds, low=1.0, high=MAX_LOCKOUT_SECONDS)
        self.store.settings.set("access.lockout_attempts", attempts)
        self.store.settings.set("access.lockout_seconds", seconds)

    # -- decisions ---------------------------------------------------------------------------------
    def check(
        self,
        resource: str,
        audio: AudioInput,
        claim: str | None = None,
        *,
        key_id: str | None = None,
        caller: str | None = None,
        name: str | None = None,
    ) -> Decision:
        """Allow or deny ``audio`` through ``resource``; every outcome is audited.

        ``caller`` (a key id or client address) scopes the identification-mode lockout.
        """
        draft, attempt = self._begin(resource, claim, key_id, caller, "verify" if claim is not None else "identify")
        if attempt is None:
            return draft
        try:
            if draft.claim is not None:
                if draft.claim not in self.store.voiceprints:
                    return self._finish(attempt, replace(draft, reason="claimed speaker is not enrolled"))
                verdict = self.sid.verify(draft.claim, audio, threshold=draft.threshold, name=name)
                decision = self._conclude(draft, verdict.speaker if verdict.accepted else None, verdict.score)
            else:
                found = self.sid.identify(audio, threshold=draft.threshold, name=name)
                decision = self._conclude(draft, found.speaker, found.score)
        except SpeakerIDError as exc:  # refused audio: audited, does not count towards the lockout
            self.store.audit.finish_attempt(attempt, "refused")
            self._record(replace(draft, reason=str(exc)))
            raise
        return self._finish(attempt, decision)

    def verify_claim(
        self,
        claim: str,
        audio: AudioInput,
        *,
        key_id: str | None = None,
        threshold: float | None = None,
        name: str | None = None,
    ) -> tuple[Verification, Decision]:
        """``POST /v1/verify`` for a client key: the claim goes through the same lockout as a door's
        (a claim locked at a door is locked here too), and the answer is audited (resource
        :data:`VERIFY_RESOURCE`). An unknown claim is a denial like any other."""
        try:
            claim = speaker_name(claim)
        except SpeakerIDError as exc:
            self._record(self._draft(VERIFY_RESOURCE, printable(str(claim)), key_id, "api-verify", reason=str(exc)))
            raise
        draft = self._draft(VERIFY_RESOURCE, claim, key_id, "api-verify")
        attempts, seconds = self.lockout
        attempt, locked_until = self.store.audit.begin_attempt(
            f"claim:{name_key(claim)}", attempts=attempts, window_seconds=seconds
        )
        if attempt is None:
            decision = self._record(replace(draft, reason=f"locked out until {locked_until}"))
            return Verification(speaker=claim, accepted=False, score=0.0, threshold=threshold or 0.0), decision
        try:
            if claim not in self.store.voiceprints:
                voice = self.sid.read(audio, name)  # read anyway: an unknown claim costs what a real one does
                verdict = Verification(
                    speaker=claim,
                    accepted=False,
                    score=0.0,
                    threshold=threshold if threshold is not None else self.sid.decider.threshold,
                    speech_seconds=voice.speech.seconds,
                    model=self.sid.embedder.model_id,
                )
                decision = replace(draft, reason="claimed speaker is not enrolled")
            else:
                verdict = self.sid.verify(claim, audio, threshold=threshold, name=name)
                decision = self._conclude(
                    replace(draft, threshold=verdict.threshold),
                    verdict.speaker if verdict.accepted else None,
                    verdict.score,
                    check=False,
                )
        except SpeakerIDError as exc:
            self.store.audit.finish_attempt(attempt, "refused")
            self._record(replace(draft, reason=str(exc)))
            raise
        return verdict, self._finish(attempt, decision)

    @staticmethod
    def _draft(resource: str, claim: str | None, key_id: str | None, mode: str, reason: str = "") -> Decision:
        return Decision(
            decision_id=uuid.uuid4().hex,
            time="",
            key_id=key_id,
            resource=resource,
            claim=claim,
            mode=mode,
            allow=False,
            reason=reason,
            speaker=None,
            score=None,
            threshold=None,
        )

    def stream(
        self,
        resource: str,
        claim: str | None = None,
        *,
        sample_rate: int = 16_000,
        key_id: str | None = None,
        caller: str | None = None,
    ) -> AccessStream:
        """A door deciding while the visitor speaks: the stream's final decision, with the
        resource's rules, lockout and one audit row (see :mod:`speakerid.flows.streaming`)."""
        return AccessStream(self, resource, claim, sample_rate=sample_rate, key_id=key_id, caller=caller)

    def _begin(
        self, resource: str, claim: str | None, key_id: str | None, caller: str | None, mode: str
    ) -> tuple[Decision, int | None]:
        """The decision's draft and a reserved attempt; ``(the recorded decision, None)`` when locked out.
        Until they pass the naming rule, the resource and claim are audited as :func:`printable`
        shows them (escaped, at most 200 characters): what a caller sent never forges a line."""
        shown_claim = None if claim is None else printable(str(claim))
        draft = self._draft(printable(str(resource)), shown_claim, key_id, mode)
        try:
            found = self.store.policy.resource(resource)
            draft = replace(draft, resource=found.name, threshold=self.threshold_of(found, claim=claim is not None))
            if claim is not None:
                draft = replace(draft, claim=speaker_name(claim))
        except SpeakerIDError as exc:  # unknown resource, bad claim: audited, then raised
            self._record(replace(draft, reason=str(exc)))
            raise
        subject = (
            f"claim:{name_key(draft.claim)}"
            if draft.claim is not None
            else f"identify:{found.name}:{caller or key_id or 'local'}"
        )
        attempts, seconds = self.lockout
        attempt, locked_until = self.store.audit.begin_attempt(subject, attempts=attempts, window_seconds=seconds)
        if attempt is None:
            return self._record(replace(draft, reason=f"locked out until {locked_until}")), None
        return draft, attempt

    def _conclude(self, draft: Decision, speaker: str | None, score: float | None, *, check: bool = True) -> Decision:
        """The rules, once the voice matched ``speaker`` (``None``: it matched no one allowed to try);
        ``check=False``: no resource's grants to check (a plain verification)."""
        score = None if score is None else round(float(score), 6)
        matched = None if score is None else round(score_calibration.verified(score), 4)  # the voice is theirs
        if speaker is None:
            reason = "voice does not match the claimed speaker" if draft.claim is not None else "voice not recognised"
            return replace(draft, reason=reason, score=score, confidence=None if matched is None else 1 - matched)
        if check and not self.store.policy.allowed(speaker, draft.resource):
            return replace(
                draft,
                reason=f"{speaker} is not allowed on {draft.resource}",
                speaker=speaker,
                score=score,
                confidence=matched,
            )
        return replace(draft, allow=True, reason="allowed", speaker=speaker, score=score, confidence=matched)

    def _finish(self, attempt: int, decision: Decision) -> Decision:
        self.store.audit.finish_attempt(attempt, "allow" if decision.allow else "deny")
        return self._record(decision)

    def _record(self, decision: Decision) -> Decision:
        """Into the audit log, with the time (every field is checked or escaped text by now)."""
        decision = replace(decision, time=datetime.now(UTC).isoformat(timespec="milliseconds"))
        self.store.audit.record_decision(decision)
        return decision

    def audit(
        self,
        since: str | None = None,
        until: str | None = None,
        resource: str | None = None,
        allow: bool | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict]:
        """Decisions, oldest first; times are ISO 8601 (a time without a zone is UTC)."""
        if resource is not None:
            resource = resource_name(resource)
        if limit is not None:
            limit = validate.count("limit", limit, low=1, high=100_000)
        offset = validate.count("offset", offset, low=0)
        rows = self.store.audit.decisions(
            since=validate.iso_time(since, "since") if since else None,
            until=validate.iso_time(until, "until") if until else None,
            resource=resource,
            allow=allow,
            limit=limit,
            offset=offset,
        )
        return [d.to_dict() for d in rows]


class AccessStream:
    """A live access check: feed audio, get events; the first final decision is the door's answer
    (``label`` ``"allow"`` or ``"deny"``), audited once. See :meth:`AccessControl.stream`."""

    def __init__(
        self,
        access: AccessControl,
        resource: str,
        claim: str | None,
        *,
        sample_rate: int,
        key_id: str | None,
        caller: str | None,
    ):
        self.access, self.rate = access, sample_rate
        mode = "stream-verify" if claim is not None else "stream-identify"
        self.draft, self.attempt = access._begin(resource, claim, key_id, caller, mode)
        self.inner = None
        self.unknown = False  # a claim nobody enrolled: the audit log says so, the caller hears a mismatch
        self.event: Event | None = None
        self.told = False  # the final event has been handed out
        if self.attempt is None:  # locked out: the answer is already given (and audited)
            self.decision: Decision | None = self.draft
            self.event = Event(0.0, 0.0, None, "deny", None, True, self.draft.reason)
        else:  # an unknown claim is heard out like any other, and denied as a voice that does not match
            self.decision = None
            self.unknown = self.draft.claim is not None and self.draft.claim not in access.store.voiceprints
            self.inner = access.sid.stream(
                sample_rate,
                "verify" if claim is not None else "identify",
                claim=self.draft.claim,
                threshold=self.draft.threshold,
                known_claims_only=False,
            )

    def feed(self, samples) -> list[Event]:
        if self.event is not None:
            return self._hand_out()
        out = []
        for event in self.inner.feed(samples):
            if event.final:
                self._conclude(event)
                return out + self._hand_out()
            out.append(event)
        return out

    def close(self) -> Event:
        if self.event is None:
            self._conclude(self.inner.close())
        self.told = True
        return self.event

    def _hand_out(self) -> list[Event]:
        if self.told:
            return []
        self.told = True
        return [self.event]

    def _conclude(self, final: Event) -> None:
        matched = final.label == "accepted" if self.draft.claim is not None else final.speaker is not None
        decision = self.access._conclude(self.draft, final.speaker if matched else None, final.score)
        if not matched and "need at least" in final.reason:  # too little speech: say so, as identify would
            decision = replace(decision, reason=final.reason)
        if self.unknown:
            decision = replace(decision, reason="claimed speaker is not enrolled")  # the audit log's truth
        self._settle(decision, final)

    def abandon(self, why: str) -> None:
        """The caller went away (or was cut off) before a final decision: a denial, audited, so a
        door's attempt never vanishes without a trace. Nothing happens after a decision."""
        if self.event is None and self.attempt is not None:
            self._settle(replace(self.draft, reason=f"stream ended before a decision ({why})"), None)

    def _settle(self, decision: Decision, final: Event | None) -> None:
        self.decision = self.access._finish(self.attempt, decision)
        t, speech = (final.t, final.speech_seconds) if final else (0.0, 0.0)
        self.event = Event(
            t, speech, decision.speaker, "allow" if decision.allow else "deny", decision.score, True, decision.reason
        )

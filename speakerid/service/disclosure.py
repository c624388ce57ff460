"""What a client key is told: a decision, never the roster, and never a lower bar.

A client key (a door controller, a kiosk, a phone line) asks "who is this?" or "is this alice?".
It learns the answer: the person named, or unknown / rejected / denied. It does not learn who
else is enrolled (no ranked candidates, no names in ``/v1/classify`` beyond the answer), whether
a name it claims is enrolled at all (an unknown claim is answered exactly like a voice that does
not match), or how close a refused voice came (no score on a refusal). It may raise the threshold
for its own question, never lower it. Admin keys, and an open loopback server without keys, see
everything. The audit log keeps the full truth either way.
"""

from __future__ import annotations

from fastapi import HTTPException

from store import ApiKey

NOT_MATCHED = "voice does not match the claimed speaker"
NOT_RECOGNISED = "voice not recognised"
ROSTER_REASONS = ("claimed speaker is not enrolled", "no enrolled speaker named")
TELLING = ("score", "within", "enrolled") + ROSTER_REASONS  # a refusal's reason that says more than no


def refusal_reason(reason: str, *, claimed: bool) -> str:
    """A refusal's reason as a client hears it: why it was refused when that is about the audio
    (too little speech), else only that it was.

    >>> refusal_reason("early: best score 0.334 is under the threshold 0.45", claimed=False)
    'early: voice not recognised'
    >>> refusal_reason("need at least 1 s of speech, got 0.31 s", claimed=True)
    'need at least 1 s of speech, got 0.31 s'
    """
    if not any(word in reason for word in TELLING):
        return reason
    early = "early: " if reason.startswith("early: ") else ""
    return early + (NOT_MATCHED if claimed else NOT_RECOGNISED)


def is_client(key: ApiKey | None) -> bool:
    return key is not None and key.role != "admin"


def no_lower_bar(key: ApiKey | None, asked: float | None, standing: float) -> None:
    """Refuse a client key's threshold under the standing one (403)."""
    if asked is not None and is_client(key) and asked < standing:
        raise HTTPException(
            403, f"a client key may raise the threshold, not lower it (asked {asked:g}, the store's is {standing:g})"
        )


def identification(result: dict, key: ApiKey | None) -> dict:
    """The answer; a client sees no candidate but the one named, and nothing of a refusal but that."""
    if not is_client(key):
        return result
    if result["speaker"] is None:
        reason = refusal_reason(result["reason"], claimed=False)
        return {**result, "candidates": [], "score": None, "confidence": None, "reason": reason}
    named = [c for c in result["candidates"] if c["speaker"] == result["speaker"]]
    return {**result, "candidates": named[:1]}


def verification(result: dict, key: ApiKey | None) -> dict:
    """Accepted or not; a client sees no score on a rejection."""
    if not is_client(key) or result["accepted"]:
        return result
    return {**result, "score": None, "confidence": None}


def decision(result: dict, key: ApiKey | None) -> dict:
    """An access decision; a client sees no score on a denial, and an unknown claim as a mismatch."""
    if not is_client(key) or result["allow"]:
        return result
    reason = refusal_reason(result["reason"], claimed=result["claim"] is not None)
    return {**result, "reason": reason, "score": None, "confidence": None}


def labels(ranked: list[dict], key: ApiKey | None, top_k: int | None) -> list[dict]:
    """``/v1/classify``'s labels; a client sees the answer and ``unknown`` only."""
    if not is_client(key):
        return ranked[:top_k]
    answer = ranked[0]
    kept = [answer] + ([r for r in ranked if r["label"] == "unknown"] if answer["label"] != "unknown" else [])
    return kept[:top_k]


def event(event: dict, key: ApiKey | None) -> dict:
    """A stream event; a client sees a score only when someone was named, accepted or let in."""
    if not is_client(key) or event.get("speaker"):
        return event
    claimed = event.get("label") in ("accepted", "rejected")
    reason = refusal_reason(event.get("reason") or "", claimed=claimed)
    return {**event, "score": None, "confidence": None, "reason": reason}

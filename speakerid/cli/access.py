"""Commands for voice access control: resources, grants, groups, lockout, checks, and the audit log."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager

from speakerid.base.errors import UsageError
from speakerid.base.text import printable
from speakerid.cli.common import arg, command, emit, finite, group, open_speakerid

group("access", "voice access control: resources, grants, groups, checks")


@contextmanager
def access_control(args: argparse.Namespace) -> Iterator:
    from speakerid.apps.access import AccessControl

    with open_speakerid(args) as sid:
        yield AccessControl(sid)


@command(
    "access grant",
    arg("principal", metavar="NAME"),
    arg("resource", metavar="RESOURCE"),
    help="allow NAME (a speaker or @group) through RESOURCE",
)
def access_grant(args: argparse.Namespace) -> int:
    with access_control(args) as access:
        access.grant(args.principal, args.resource)
    emit(args, {"granted": args.principal, "resource": args.resource}, f"{args.principal} may use {args.resource}")
    return 0


@command(
    "access revoke", arg("principal", metavar="NAME"), arg("resource", metavar="RESOURCE"), help="withdraw a grant"
)
def access_revoke(args: argparse.Namespace) -> int:
    with access_control(args) as access:
        access.revoke(args.principal, args.resource)
    emit(
        args,
        {"revoked": args.principal, "resource": args.resource},
        f"{args.principal} may no longer use {args.resource}",
    )
    return 0


@command(
    "access groups",
    arg("group", nargs="?", metavar="GROUP"),
    arg("speaker", nargs="?", metavar="SPEAKER"),
    arg("--remove", action="store_true", help="remove SPEAKER from GROUP instead of adding"),
    help="list groups (or one group's members), or add/remove a member",
)
def access_groups(args: argparse.Namespace) -> int:
    if args.remove and not args.speaker:
        raise UsageError("--remove needs GROUP and SPEAKER")
    with access_control(args) as access:
        done = ""
        if args.group and args.speaker:
            if args.remove:
                changed = access.remove_from_group(args.group, args.speaker)
                done = (
                    f"removed {args.speaker} from @{args.group.lstrip('@')}"
                    if changed
                    else f"{args.speaker} was not in @{args.group.lstrip('@')}; nothing changed"
                )
            else:
                access.add_to_group(args.group, args.speaker)
                done = f"added {args.speaker} to @{args.group.lstrip('@')}"
        groups = access.groups()
    if args.group and not args.speaker:  # one group: its members
        from store import group_name, name_key

        key = name_key(group_name(args.group))
        members = groups.get(key, [])
        emit(
            args,
            {"group": key, "members": members},
            f"@{key}: {', '.join(members)}" if members else f"@{key} has no members",
        )
        return 0
    listing = "\n".join(f"@{g}: {', '.join(m)}" for g, m in groups.items()) or "no groups"
    emit(args, {"groups": groups, **({"done": done} if done else {})}, (done + "\n" if done else "") + listing)
    return 0


@command("access resources", help="list resources, thresholds and who is allowed")
def access_resources(args: argparse.Namespace) -> int:
    with access_control(args) as access:
        rows = access.resources()
    emit(args, {"resources": rows}, "\n".join(_resource_line(r) for r in rows) or "no resources")
    return 0


def _resource_line(row: dict) -> str:
    limit = f"threshold {row['threshold']:.3f}" + (f" (false accepts {row['far']:.2%})" if row["far"] else "")
    return f"{row['resource']:<20} {limit}  allowed: {', '.join(row['allowed']) or '-'}"


@command(
    "access threshold",
    arg("resource", metavar="RESOURCE"),
    arg("value", type=finite, metavar="T"),
    help="set a resource's own threshold",
)
def access_threshold(args: argparse.Namespace) -> int:
    with access_control(args) as access:
        access.set_threshold(args.resource, args.value)
    emit(args, {"resource": args.resource, "threshold": args.value}, f"{args.resource}: threshold {args.value:g}")
    return 0


@command(
    "access far",
    arg("resource", metavar="RESOURCE"),
    arg("value", type=finite, metavar="F"),
    help="set a resource's false-accept target (e.g. 0.001), converted on the store's population",
)
def access_far(args: argparse.Namespace) -> int:
    with access_control(args) as access:
        access.set_far(args.resource, args.value)
        shown = next(r for r in access.resources() if r["resource"] == access.store.resource(args.resource).name)
    emit(args, shown, f"{shown['resource']}: false accepts {args.value:.2%} -> threshold {shown['threshold']:.3f}")
    return 0


@command(
    "access lockout",
    arg("--attempts", type=int, required=True, help="denials that lock"),
    arg("--seconds", type=finite, required=True, help="window (and lock duration) in seconds"),
    help="lock a claimed identity (or identification at a door by one caller) after repeated denials",
)
def access_lockout(args: argparse.Namespace) -> int:
    with access_control(args) as access:
        access.set_lockout(args.attempts, args.seconds)
        attempts, seconds = access.lockout
    emit(args, {"attempts": attempts, "seconds": seconds}, f"lock after {attempts} denials within {seconds:g} s")
    return 0


@command(
    "access check",
    arg("resource", metavar="RESOURCE"),
    arg("clip", metavar="CLIP"),
    arg("--claim", metavar="NAME", help="the identity the speaker claims (verify instead of identify)"),
    help="allow or deny CLIP at RESOURCE: exit 0 allow, 3 deny",
)
def access_check(args: argparse.Namespace) -> int:
    with access_control(args) as access:
        decision = access.check(args.resource, args.clip, args.claim, caller="cli")
    verdict = "allow" if decision.allow else "deny"
    emit(args, decision.to_dict(), f"{verdict}: {decision.reason} (decision {decision.decision_id})")
    return 0 if decision.allow else 3


@command(
    "audit",
    arg("--since", metavar="T", help="ISO time, e.g. 2026-11-24T09:00 (UTC unless a zone is given)"),
    arg("--until", metavar="T", help="ISO time: decisions before it"),
    arg("--resource", metavar="R", help="only this resource"),
    arg("--decision", choices=["allow", "deny"], help="only allowed or only denied"),
    arg("--limit", type=int, metavar="N", help="at most N decisions"),
    arg("--offset", type=int, default=0, metavar="N", help="skip the first N"),
    help="access decisions, oldest first",
)
def audit(args: argparse.Namespace) -> int:
    with access_control(args) as access:
        rows = access.audit(
            since=args.since,
            until=args.until,
            resource=args.resource,
            allow=None if args.decision is None else args.decision == "allow",
            limit=args.limit,
            offset=args.offset,
        )
    text = (
        "\n".join(
            f"{printable(r['time'])}  {'allow' if r['allow'] else 'deny ':<5} {printable(r['resource']):<16} "
            f"claim={printable(r['claim'] or '-'):<12} speaker={printable(r['speaker'] or '-'):<12} "
            f"score={r['score'] if r['score'] is not None else '-'}  key={printable(r['key_id'] or '-')}  "
            f"{printable(r['reason'], 400)}"
            for r in rows
        )
        or "no access decisions"
    )
    emit(args, {"decisions": rows}, text)
    return 0

"""Access control from the command line: grants, groups, checks with exit codes, audit, revoke."""

from __future__ import annotations

import json

import pytest

from speakerid import SpeakerID
from speakerid.apps.access import AccessControl
from store import UnknownResourceError

from conftest import clips_of, needs_data, run_cli

pytestmark = [needs_data]


@pytest.fixture
def home(tmp_path, model_dir):
    home = tmp_path / "home"
    with SpeakerID.open(home) as sid:
        sid.enroll("alice", clips_of("id90001", 1))
        sid.enroll("bob", clips_of("id90002", 1))
    return home


def test_cli_check_exit_codes_groups_audit_and_revoke(home, cli_env):
    cli_env["SPEAKERID_HOME"] = str(home)
    assert run_cli(["access", "grant", "@staff", "server-room"], cli_env).returncode == 0
    assert run_cli(["access", "groups", "staff", "alice"], cli_env).returncode == 0
    assert run_cli(["access", "threshold", "server-room", "0.6"], cli_env).returncode == 0
    resources = json.loads(run_cli(["access", "resources", "--json"], cli_env).stdout)["resources"]
    assert resources == [{"resource": "server-room", "threshold": 0.6, "far": None, "allowed": ["@staff"]}]

    alice, bob = str(clips_of("id90001", 3)[0]), str(clips_of("id90002", 3)[0])
    allow = run_cli(["access", "check", "server-room", alice, "--json"], cli_env)
    assert allow.returncode == 0 and json.loads(allow.stdout)["speaker"] == "alice"
    deny = run_cli(["access", "check", "server-room", bob, "--json"], cli_env)
    assert deny.returncode == 3 and json.loads(deny.stdout)["reason"] == "bob is not allowed on server-room"
    claim = run_cli(["access", "check", "server-room", bob, "--claim", "alice", "--json"], cli_env)
    assert claim.returncode == 3 and "does not match" in json.loads(claim.stdout)["reason"]

    audit = json.loads(run_cli(["audit", "--json"], cli_env).stdout)["decisions"]
    assert [(d["allow"], d["claim"]) for d in audit] == [(True, None), (False, None), (False, "alice")]

    assert run_cli(["access", "revoke", "@staff", "server-room"], cli_env).returncode == 0
    with SpeakerID.open(home) as sid:
        assert AccessControl(sid).check("server-room", clips_of("id90001", 3)[0]).allow is False
        with pytest.raises(UnknownResourceError, match="unknown resource"):
            AccessControl(sid).check("no-door", clips_of("id90001", 3)[0])


def test_removing_a_speaker_removes_their_grants(home):
    with SpeakerID.open(home) as sid:
        access = AccessControl(sid)
        access.grant("bob", "garage")
        access.add_to_group("staff", "bob")
        sid.remove("bob")
        assert access.resources()[0]["allowed"] == [] and access.groups() == {}

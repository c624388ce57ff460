"""Every HTTP endpoint fuzzed from the service's own OpenAPI description (schemathesis, which
draws valid and invalid requests with hypothesis), against a real uvicorn on 127.0.0.1: no 5xx,
every error in the one shape ``{"error": "<one line>"}``, and the server's memory bounded.

CI runs a reduced form (a few requests per endpoint and key); the full form is
``SPEAKERID_FUZZ_EXAMPLES=200 python -m pytest tests/test_fuzz.py -s``.
"""

from __future__ import annotations

import os

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from speakerid import SpeakerID
from speakerid.apps.access import AccessControl
from speakerid.apps.keys import create_key

from conftest import clips_of, needs_data, serving

pytestmark = [needs_data]
EXAMPLES = int(os.environ.get("SPEAKERID_FUZZ_EXAMPLES", "6"))
MEMORY_GROWTH_MB = 400  # the bound SECURITY.md states for any mix of requests


def rss_mb(pid: int, field: str) -> float:
    return next(int(line.split()[1]) / 1024 for line in open(f"/proc/{pid}/status") if line.startswith(field + ":"))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory, model_dir):
    home = tmp_path_factory.mktemp("fuzz") / "home"
    with SpeakerID.open(home) as sid:
        sid.enroll("alice", clips_of("id90001", 1))
        sid.enroll("bob", clips_of("id90002", 1))
        AccessControl(sid).grant("alice", "door")
        admin, _ = create_key(sid.store, "admin")
        client, _ = create_key(sid.store, "client")
    with serving(home, "--rate-limit", "10000", "--rate-burst", "10000") as (base, proc):
        spec = httpx.get(base + "/openapi.json", headers={"Authorization": f"Bearer {admin}"}, timeout=60).json()
        yield base, proc, schemathesis.openapi.from_dict(spec), {"admin": admin, "client": client, "none": ""}


def test_no_endpoint_answers_5xx_or_an_error_of_another_shape(fuzzed):
    base, proc, schema, keys = fuzzed
    before = rss_mb(proc.pid, "VmRSS")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    seen: dict[str, set[int]] = {}
    for operation in operations:
        for key in keys.values():
            for mode in schemathesis.GenerationMode:  # valid requests, and requests that break the schema
                fuzz(base, operation, key, mode, seen)
    grew = rss_mb(proc.pid, "VmHWM") - before
    print(
        f"\nfuzzed {len(operations)} operations x {len(keys)} keys x 2 modes x {EXAMPLES} examples; "
        f"statuses {sorted({s for v in seen.values() for s in v})}; peak growth {grew:.0f} MB"
    )
    assert grew < MEMORY_GROWTH_MB


def fuzz(base: str, operation, key: str, mode, seen: dict[str, set[int]]) -> None:
    """``EXAMPLES`` requests drawn from ``operation``'s schema (``mode``: within it or breaking it), sent with ``key``."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        response = case.call(base_url=base, headers=headers, timeout=120)
        seen.setdefault(operation.label, set()).add(response.status_code)
        assert response.status_code < 500, (case.as_curl_command(), response.text[:300])
        if response.status_code >= 400:
            body = response.json()
            assert set(body) == {"error"} and "\n" not in body["error"], response.text[:300]

    try:
        check()
    except Unsatisfiable:  # nothing in this operation's schema can be broken (no parameters, no body)
        assert mode == schemathesis.GenerationMode.NEGATIVE

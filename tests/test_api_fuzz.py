"""schemathesis against the gateway's own OpenAPI document, on the real gateway process,
with each role's token: whatever a caller sends that the document allows (and what it
does not), no answer is a server error, and every answer is one the document lists, with
the body it says. A bounded number of examples per operation keeps it in `make test`."""

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from gateway.auth import ROLES
from simulators.gateway_process import GatewayProcess, make_token

EXAMPLES = 20  # per operation; each is sent once per role

# the live stream never ends by itself: its logins are tested in tests/test_auth.py
schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/api/v1/stream")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzzed(request, broker, tmp_path_factory):
    """The gateway on each store: PostgreSQL refuses what SQLite takes (a NUL in text)."""
    url = ""
    if request.param == "postgresql":
        import psycopg

        server = request.getfixturevalue("postgres")
        with psycopg.connect(server.url("postgres"), autocommit=True) as conn:
            conn.execute("create database fuzzed")
        url = server.url("fuzzed")
    gw = GatewayProcess(tmp_path_factory.mktemp("fuzzed"), broker.port, database_url=url).start()
    gw.register("amb-01", kind="ambulance")
    tokens = {role: make_token(gw.data_dir, role, f"fuzz-{role}", database_url=url) for role in ROLES}
    yield gw, tokens
    gw.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed):
    gw, _ = fuzzed
    return schemathesis.openapi.from_url(gw.url + "/api/v1/openapi.json")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error_or_an_undocumented_answer(case, fuzzed):
    gw, tokens = fuzzed
    import time

    for token in tokens.values():
        t0 = time.monotonic()
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"})
        if time.monotonic() - t0 > 0.5:
            print("SLOW", case.method, case.path, time.monotonic() - t0)

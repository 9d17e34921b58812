"""Schemathesis against the admin API's own OpenAPI document, over real HTTP.

The application runs under uvicorn on 127.0.0.1 over a real SQLite file; the
``schemathesis run`` command generates requests from ``/openapi.json`` (valid and
invalid ones) and checks that no answer is a 5xx and that every answer matches the
document (status, content type, body).  The bearer token reaches it through its config
file and the environment, never its command line.  Renewal is aimed at a renewable
token made for the run (random keys would only ever meet 404s), so that its 200 is
checked against the document too.

Two of its checks do not fit this API and are left out, on purpose:
``positive_data_acceptance`` expects every schema-valid body to be accepted, but a
schema cannot say that a scope must not widen the caller's own or that an expiry must
lie in the future (those are 403 / 422 by design); ``use_after_free`` expects a deleted
resource to be gone, but ``DELETE /tokens/{key}`` *revokes*: the token stays readable,
with ``revoked_at`` set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.served import served

from authtoken import AuthToken, Security, Session, SQLRepository
from authtoken.admin import DelegationTokenAuth, FailureLimiter, create_app

CONFIG = """\
[headers]
Authorization = "Bearer ${AUTHTOKEN_SCHEMA_TEST_TOKEN}"

[[operations]]
include-operation-id = "renewToken"
parameters = { key = "${AUTHTOKEN_SCHEMA_RENEWABLE_KEY}" }
"""


def _schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) \
        or shutil.which("schemathesis")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("schemathesis is required in CI: pip install -e '.[test]'")
        pytest.skip("schemathesis is not installed: pip install -e '.[test]'")
    return found


@pytest.mark.slow
def test_schemathesis_finds_no_5xx_and_no_schema_violation(tmp_path: Path) -> None:
    command = _schemathesis()
    security = Security(SQLRepository(f"sqlite:///{tmp_path / 'api.db'}"),
                        secret_keys=["schema-test"])
    admin = security.authorize_token(
        AuthToken("authtoken:admin reports:read reports:write", expires="never"),
        user="alice")
    session = Session(security)
    session.login_by_auth_token(admin)
    renewable = AuthToken("reports:read", expires="1d", max_lifetime="3650d", max_uses=5)
    session.authorize_token(renewable)
    # Generated requests fail authentication on purpose now and then; a generous limit
    # keeps the rest of the run from becoming 429s (the limit has tests of its own).
    app = create_app(security, authenticate=DelegationTokenAuth(security),
                     limiter=FailureLimiter(limit=100, window=1))
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    environment = {**os.environ, "AUTHTOKEN_SCHEMA_TEST_TOKEN": admin,
                   "AUTHTOKEN_SCHEMA_RENEWABLE_KEY": str(renewable.key),
                   "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"}
    try:
        with served(app) as url:
            run = subprocess.run(
                [command, "--config-file", str(config), "run", f"{url}/openapi.json",
                 "--exclude-checks", "positive_data_acceptance,use_after_free",
                 "--max-examples", "40", "--seed", "1", "--no-color"],
                capture_output=True, text=True, timeout=480, env=environment,
                cwd=tmp_path, check=False,
            )
        # the run was authenticated: it made and revoked tokens through the API
        done = {(e.action, e.outcome) for e in security.audit_events(limit=10_000)
                if e.actor is not None and e.actor.startswith("token:")}
    finally:
        security.close()
    assert {("authorize", "ok"), ("revoke", "ok"), ("update", "ok"), ("renew", "ok"),
            ("renew", "refused")} <= done
    report = run.stdout + run.stderr
    assert admin not in report
    assert run.returncode == 0, report[-6000:]
    assert "No issues found" in report or "passed" in report.lower(), report[-3000:]

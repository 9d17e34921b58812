"""Helpers of the broker's tests: the engine's keys, the account, a job's session."""

from __future__ import annotations

from authtoken import AuthToken, Security, Session

KEYS = ["broker-key-new", "broker-key-old"]
USERNAME = "alice-at-spatium"
PASSWORD = "S3cret-sentinel-password-77"


def job_session(security: Security, scope: str = "upstream:spatium",
                user: str = "alice") -> tuple[Session, str]:
    """A session logged in by a fresh token of ``user`` with ``scope``, and its string."""
    string = security.authorize_token(AuthToken(scope), user=user)
    session = Session(security)
    session.login_by_auth_token(string)
    return session, string

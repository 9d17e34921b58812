"""The background refresher and a host clock ahead of the issuer's: no refresh storm.

When this host's clock runs ahead of the issuer's by more than a token's life, every
token the issuer hands out is already due here.  The refresher must not send the refresh
token again and again (it once did, twenty times a second): it naps and says why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest

from authtoken.issuers.spatium import KeyAuthorizationSession
from authtoken.testing import SpatiumAuthority

REFRESH = "permission/refresh"
ISSUE_BY_KEY = "permission/issue-by-key"


@pytest.fixture
def authority() -> Iterator[SpatiumAuthority]:
    with SpatiumAuthority(permission_lifetime=60) as running:
        yield running


def test_a_clock_far_ahead_does_not_make_the_refresher_spin(
        authority: SpatiumAuthority, caplog: pytest.LogCaptureFixture) -> None:
    ahead = 1000.0  # seconds: far more than the 60-second tokens live
    session = KeyAuthorizationSession(authority.url, "backend", ["register"],
                                      authority.merchant_key,
                                      clock=lambda: time.time() + ahead)
    with session, caplog.at_level(logging.WARNING, logger="authtoken"):
        session.get_access_token()
        session.start()
        deadline = time.monotonic() + 15
        while "clock ahead" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "is this host's clock ahead of the issuer's?" in caplog.text
        time.sleep(0.5)  # a spinning refresher would send ten more meanwhile
        session.stop()
    sent = authority.count(REFRESH) + authority.count(ISSUE_BY_KEY)
    assert sent <= 3, sent  # the first issue, the background's first refresh, at most one more

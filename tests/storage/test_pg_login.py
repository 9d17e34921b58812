"""The PostgreSQL login's pure parts: how far polling is trusted, how it sleeps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from authtoken._sql import _pg_login


@given(st.integers(0, _pg_login.POLL_TRUST_MAX), st.lists(st.booleans(), max_size=40))
def test_poll_trust_stays_bounded_and_four_misses_end_it(start: int, caught: list[bool]) -> None:
    """Catches raise the trust up to its bound, misses halve it, four in a row end it."""
    trust = start
    for hit in caught:
        after = _pg_login.next_poll_trust(trust, hit)
        assert 0 <= after <= _pg_login.POLL_TRUST_MAX
        assert after >= trust if hit else after == trust // 2
        trust = after
    for _ in range(4):
        trust = _pg_login.next_poll_trust(trust, False)
    assert trust == 0
    assert _pg_login.next_poll_trust(0, True) == 1  # a caught probe turns polling back on


@pytest.mark.parametrize("has_poll", [True, False], ids=["poll", "select"])
def test_the_sleep_on_the_socket_wakes_on_data_and_times_out_without(
    has_poll: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ways of sleeping on the login socket: poll, and select where poll is missing."""
    import select
    import socket

    if not has_poll:
        monkeypatch.delattr(select, "poll", raising=False)
    elif not hasattr(select, "poll"):
        pytest.skip("this platform has no select.poll")
    left, right = socket.socketpair()
    with left, right:
        readable = _pg_login.read_waiter(left.fileno())
        assert readable(0.01) is False
        right.send(b"x")
        assert readable(5) is True

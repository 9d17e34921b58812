"""The ``upstream`` action of the audit trail: what an issuance leaves, and what not."""

from __future__ import annotations

from authtoken import AuthToken, MemoryRepository, Script, Security
from authtoken._views import event_view
from authtoken.testing import FakeClock


def test_an_issuance_is_an_upstream_event() -> None:
    """``record_upstream`` puts the link and the session's token key on the trail."""
    with Security(MemoryRepository(), secret_keys="k") as security:
        string = security.authorize_token(AuthToken("upstream:space"), user="alice")
        principal = security.login_by_auth_token(string, script=Script(key=7))
        security.record_upstream(principal, "space")
        security.record_upstream(principal, "space", "SessionExpired")
        events = [e for e in security.audit_events(user="alice") if e.action == "upstream"]
    assert {(e.outcome, e.reason) for e in events} == {("ok", None),
                                                        ("refused", "SessionExpired")}
    for event in events:
        assert event.actor == "upstream:space"
        assert event.token_key == principal.token_key and event.user == "alice"
        assert event.script == Script(key=7)
        view = event_view(event)
        assert view["action"] == "upstream" and string not in repr(view)


def test_many_issuances_are_counted_not_listed() -> None:
    """A busy job's issuances are summed per batch and minute like logins: every one
    counted, one event."""
    with Security(MemoryRepository(), secret_keys="k", clock=FakeClock()) as security:
        string = security.authorize_token(AuthToken("upstream:space"), user=5)
        principal = security.login_by_auth_token(string)
        for _ in range(40):
            security.record_upstream(principal, "space")
        events = [e for e in security.audit_events(user=5) if e.action == "upstream"]
    assert sum(e.count for e in events) == 40
    assert len(events) == 1

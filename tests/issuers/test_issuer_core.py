"""Unit tests of the sans-IO refresh engine (``authtoken.issuers._core``): no HTTP at all.

Adapters here are scripted: their flows yield ``Request`` values that the test answers
by hand, and the clock is a number the test moves.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtoken import IssuerError, SessionExpired, SessionNotEstablished
from authtoken.issuers._core import (
    BACKOFF_FIRST,
    BACKOFF_MAX,
    Flow,
    Grant,
    Refresher,
    Request,
    Response,
    TransportFailure,
    issuer_error,
)

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "authtoken" / "issuers" / "_core.py"


class Clock:
    """Seconds since 1970, moved by hand."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ok(**fields: Any) -> Response:
    return Response(200, {}, json.dumps(fields).encode())


def refused(status: int = 401, code: str = "INVALID_REFRESH_TOKEN") -> Response:
    body = {"requestId": "rid-1", "error": {"code": code, "message": "no"}}
    return Response(status, {}, json.dumps(body).encode())


class Script:
    """A scripted adapter: grants live ``lifetime`` seconds and refresh ``lead`` early."""

    def __init__(self, clock: Clock, *, established: bool = False, lifetime: float = 100,
                 lead: float = 20, refresh_lifetime: float | None = 1000,
                 on_refused: str = "raise") -> None:
        self.clock = clock
        self.established = established
        self.lifetime = lifetime
        self.lead = lead
        self.refresh_lifetime = refresh_lifetime
        self.on_refused = on_refused
        self.serial = 0
        self.refusals: list[IssuerError] = []

    def make(self) -> Grant:
        self.serial += 1
        now = self.clock()
        return Grant(
            access_token=f"access-{self.serial}",
            expires_at=now + self.lifetime,
            refresh_at=now + self.lifetime - self.lead,
            refresh_token=f"refresh-{self.serial}",
            refresh_expires_at=(None if self.refresh_lifetime is None
                                else now + self.refresh_lifetime),
        )

    def exchange(self, url: str, body: Any) -> Flow:
        response = yield Request("POST", url, (("request-id", "r"),), json=body)
        if response.status >= 400:
            raise issuer_error(response, url)
        response.json()  # a malformed answer raises IssuerError with its status
        return self.make()

    def first_grant(self) -> Flow | None:
        if not self.established:
            return None
        return self.exchange("https://issuer.test/issue", {"by": "key"})

    def refresh_grant(self, grant: Grant) -> Flow:
        return self.exchange("https://issuer.test/refresh", {"refresh": grant.refresh_token})

    def refused(self, grant: Grant, error: IssuerError) -> Flow:
        self.refusals.append(error)
        if self.on_refused == "raise":
            raise SessionExpired("expired", status=error.status)
        return self.exchange("https://issuer.test/issue", {"by": "key"})


def drive(flow: Generator[Request, Response, str],
          answers: list[Response | TransportFailure]) -> tuple[str, list[Request]]:
    """Run ``flow`` answering its requests from ``answers``; the result and the requests."""
    sent: list[Request] = []
    try:
        request = next(flow)
        while True:
            sent.append(request)
            if not answers:
                raise AssertionError(f"unexpected request {request}")
            answer = answers.pop(0)
            if isinstance(answer, TransportFailure):
                request = flow.throw(answer)
            else:
                request = flow.send(answer)
    except StopIteration as stop:
        return stop.value, sent


def ready(clock: Clock, **kwargs: Any) -> tuple[Refresher, Script]:
    """A refresher that already holds grant number 1."""
    script = Script(clock, **kwargs)
    refresher = Refresher(script, clock)
    refresher.succeeded(script.make())
    return refresher, script


def test_fast_path_only_before_refresh_at() -> None:
    """``token()`` gives the access token before ``refresh_at`` and ``None`` otherwise."""
    clock = Clock()
    refresher = Refresher(Script(clock), clock)
    assert refresher.token() is None
    refresher, _ = ready(clock)
    assert refresher.token() == "access-1"
    clock.advance(80)
    assert refresher.token() is None


def test_not_established_raises_without_request() -> None:
    """With no grant and no way to get a first one, ``ensure`` raises SessionNotEstablished."""
    clock = Clock()
    refresher = Refresher(Script(clock), clock)
    with pytest.raises(SessionNotEstablished):
        drive(refresher.ensure(), [])
    assert refresher.grant is None


def test_first_grant_is_fetched_and_kept() -> None:
    """An adapter that can get a first grant is asked once, and the grant is stored."""
    clock = Clock()
    refresher = Refresher(Script(clock, established=True), clock)
    token, sent = drive(refresher.ensure(), [ok()])
    assert token == "access-1"
    assert [r.url for r in sent] == ["https://issuer.test/issue"]
    assert refresher.token() == "access-1"


def test_fresh_grant_needs_no_request() -> None:
    """``ensure`` on a fresh grant returns at once: the check after taking the lock."""
    clock = Clock()
    refresher, _ = ready(clock)
    assert drive(refresher.ensure(), []) == ("access-1", [])


def test_due_grant_is_refreshed_with_its_refresh_token() -> None:
    """Once due, the grant is refreshed with its refresh token and replaced."""
    clock = Clock()
    refresher, _ = ready(clock)
    clock.advance(85)
    token, sent = drive(refresher.ensure(), [ok()])
    assert token == "access-2"
    assert sent[0].json == {"refresh": "refresh-1"}
    assert refresher.grant is not None and refresher.grant.refresh_token == "refresh-2"


def test_force_refreshes_a_fresh_grant() -> None:
    """``ensure(force=True)`` refreshes even a grant that is not due."""
    clock = Clock()
    refresher, _ = ready(clock)
    token, sent = drive(refresher.ensure(force=True), [ok()])
    assert token == "access-2" and len(sent) == 1


def test_refusal_goes_to_the_adapter_and_drops_the_grant() -> None:
    """A 4xx on refresh hands the error to ``refused``; its SessionExpired propagates."""
    clock = Clock()
    refresher, script = ready(clock)
    clock.advance(85)
    with pytest.raises(SessionExpired):
        drive(refresher.ensure(), [refused(401)])
    assert refresher.grant is None
    assert [(e.status, e.code, e.request_id) for e in script.refusals] == [
        (401, "INVALID_REFRESH_TOKEN", "rid-1")]


def test_refused_adapter_may_issue_a_new_grant() -> None:
    """An adapter may answer a refusal with a new flow (e.g. issue by key)."""
    clock = Clock()
    refresher, _ = ready(clock, on_refused="issue")
    clock.advance(85)
    token, sent = drive(refresher.ensure(), [refused(400), ok()])
    assert token == "access-2"
    assert [r.url for r in sent] == ["https://issuer.test/refresh", "https://issuer.test/issue"]


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_transient_status_keeps_the_valid_token(status: int) -> None:
    """A 5xx or 429 while the token is valid returns the token and raises nothing."""
    clock = Clock()
    refresher, script = ready(clock)
    clock.advance(85)
    token, sent = drive(refresher.ensure(), [refused(status, "BUSY")])
    assert token == "access-1" and len(sent) == 1
    assert refresher.grant is not None and refresher.grant.refresh_token == "refresh-1"
    assert refresher.last_error is not None and refresher.last_error.status == status
    assert script.refusals == []


def test_backoff_grows_and_is_bounded() -> None:
    """After each transient failure the next attempt waits twice as long, up to the cap,
    and no request goes out before then."""
    clock = Clock()
    refresher, _ = ready(clock, lifetime=10_000, lead=9_500)
    clock.advance(600)
    assert drive(refresher.ensure(), [refused(503)])[0] == "access-1"
    for failures in range(10):
        wait = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** failures)
        clock.advance(wait - 0.01)
        assert drive(refresher.ensure(), []) == ("access-1", [])
        clock.advance(0.02)
        token, sent = drive(refresher.ensure(), [refused(503)])
        assert token == "access-1" and len(sent) == 1


def test_transient_after_expiry_raises_the_error() -> None:
    """Once the access token has expired, a transient failure is raised, and again
    during the backoff without a request."""
    clock = Clock()
    refresher, _ = ready(clock)
    clock.advance(150)
    with pytest.raises(IssuerError) as caught:
        drive(refresher.ensure(), [refused(503, "BUSY")])
    assert caught.value.status == 503 and caught.value.code == "BUSY"
    with pytest.raises(IssuerError) as again:
        drive(refresher.ensure(), [])
    assert again.value.status == 503


def test_first_grant_transient_failure_raises() -> None:
    """With no token to fall back on, a transient failure of the first grant is raised."""
    clock = Clock()
    refresher = Refresher(Script(clock, established=True), clock)
    with pytest.raises(IssuerError) as caught:
        drive(refresher.ensure(), [TransportFailure("ConnectError", sent=False)])
    assert caught.value.status is None


def test_unsent_transport_failure_keeps_the_refresh_token() -> None:
    """A request that never connected cannot have used the refresh token: it is reused."""
    clock = Clock()
    refresher, _ = ready(clock)
    clock.advance(85)
    token, _ = drive(refresher.ensure(), [TransportFailure("ConnectError", sent=False)])
    assert token == "access-1"
    assert refresher.last_error is not None and refresher.last_error.status is None
    clock.advance(BACKOFF_FIRST)
    token, sent = drive(refresher.ensure(), [ok()])
    assert token == "access-2" and sent[0].json == {"refresh": "refresh-1"}
    assert refresher.last_error is None


def test_sent_transport_failure_never_resends_the_refresh_token() -> None:
    """After a failure once the request may have arrived, the refresh token is dropped
    and the adapter is asked what to do instead of sending it again."""
    clock = Clock()
    refresher, script = ready(clock, on_refused="issue")
    clock.advance(85)
    token, _ = drive(refresher.ensure(), [TransportFailure("ReadTimeout", sent=True)])
    assert token == "access-1"
    assert refresher.grant is not None and refresher.grant.refresh_token is None
    clock.advance(BACKOFF_FIRST)
    token, sent = drive(refresher.ensure(), [ok()])
    assert token == "access-2"
    assert [r.url for r in sent] == ["https://issuer.test/issue"]
    assert len(script.refusals) == 1


def test_dead_refresh_token_is_not_sent() -> None:
    """A refresh token past its own expiry goes to ``refused`` without a request."""
    clock = Clock()
    refresher, script = ready(clock, refresh_lifetime=50)
    clock.advance(85)
    with pytest.raises(SessionExpired):
        drive(refresher.ensure(), [])
    assert isinstance(script.refusals[0], SessionExpired)
    assert refresher.grant is None


def test_success_resets_the_backoff() -> None:
    """A success after failures clears the error and the backoff."""
    clock = Clock()
    refresher, _ = ready(clock)
    clock.advance(85)
    drive(refresher.ensure(), [refused(503)])
    clock.advance(BACKOFF_FIRST)
    drive(refresher.ensure(), [ok()])
    assert refresher.last_error is None
    clock.advance(85)
    assert drive(refresher.ensure(), [ok()])[0] == "access-3"


def test_expire_access_token_makes_it_due() -> None:
    """``expire_access_token`` (the API refused the token) forces the next refresh."""
    clock = Clock()
    refresher, _ = ready(clock)
    refresher.expire_access_token()
    assert refresher.token() is None
    assert drive(refresher.ensure(), [ok()])[0] == "access-2"


def test_reprs_hide_tokens_and_bodies() -> None:
    """Grants, requests and responses never show a token or a body in their repr."""
    grant = Grant("access-secret", 1.0, 0.5, "refresh-secret", extra={"k": "extra-secret"})
    request = Request("POST", "https://i.test/t", (("authorization", "Bearer hdr-secret"),),
                      json={"password": "body-secret"})
    response = Response(200, {}, b'{"token": "resp-secret"}')
    for text in (repr(grant), str(grant), repr(request), repr(response)):
        assert "secret" not in text


def test_issuer_error_reads_status_code_and_request_id() -> None:
    """``issuer_error`` takes the status, the upstream code and the request id."""
    spatium = issuer_error(refused(401, "INVALID_CREDENTIALS"), "login")
    assert (spatium.status, spatium.code, spatium.request_id) == (
        401, "INVALID_CREDENTIALS", "rid-1")
    assert "401" in str(spatium) and "INVALID_CREDENTIALS" in str(spatium)
    oauth = issuer_error(Response(400, {"request-id": "hdr"},
                                  b'{"error": "invalid_grant", "requestId": "body"}'), "x")
    assert (oauth.code, oauth.request_id) == ("invalid_grant", "hdr")
    garbage = issuer_error(Response(502, {}, b"<html>bad gateway</html>"), "x")
    assert (garbage.status, garbage.code, garbage.request_id) == (502, None, None)


def test_response_json_raises_issuer_error() -> None:
    """A body that is not JSON raises IssuerError with the status, not ValueError."""
    with pytest.raises(IssuerError) as caught:
        Response(200, {}, b"not json").json()
    assert caught.value.status == 200


def test_core_source_imports_no_io() -> None:
    """The core's own imports name neither httpx nor asyncio nor threading."""
    tree = ast.parse(CORE.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    assert not names & {"httpx", "asyncio", "threading", "socket", "time"}


def test_core_loads_no_io_module() -> None:
    """Importing the core (with its packages stubbed) loads no httpx, asyncio or threading."""
    code = f"""
import sys, types
root = {str(ROOT / "authtoken")!r}
for name, path in (("authtoken", root), ("authtoken.issuers", root + "/issuers")):
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module
import authtoken.issuers._core
print(sorted(m for m in ("httpx", "asyncio", "threading") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == "[]"


OUTCOMES = st.lists(
    st.tuples(
        st.sampled_from(["ok", "401", "503", "connect", "timeout"]),
        st.floats(min_value=0, max_value=300, allow_nan=False),
    ),
    max_size=40,
)


def answer_for(kind: str) -> Response | TransportFailure:
    if kind == "connect":
        return TransportFailure("ConnectError", sent=False)
    if kind == "timeout":
        return TransportFailure("ReadTimeout", sent=True)
    return {"ok": ok(), "401": refused(401), "503": refused(503)}[kind]


@settings(max_examples=150, deadline=None)
@given(OUTCOMES)
def test_a_refresh_token_is_never_sent_after_it_was_answered(
        outcomes: list[tuple[str, float]]) -> None:
    """Whatever the issuer does, a refresh token that reached it is never sent again,
    and a returned token is never expired."""
    clock = Clock()
    refresher, _ = ready(clock, on_refused="issue")
    burned: set[str] = set()
    for kind, step in outcomes:
        clock.advance(step)
        flow = refresher.ensure()
        result: str | None = None
        try:
            request = next(flow)
            while True:
                token = (request.json or {}).get("refresh")
                if token is not None:
                    assert token not in burned
                    if kind in ("ok", "401", "timeout"):  # it reached the issuer and
                        burned.add(token)  # may have been used; a 5xx answer did not use it
                answer = answer_for(kind)
                request = (flow.throw(answer) if isinstance(answer, TransportFailure)
                           else flow.send(answer))
                kind = "ok" if kind == "401" else kind  # the re-issue after a refusal
        except StopIteration as stop:
            result = stop.value
        except IssuerError:
            continue
        grant = refresher.grant
        assert grant is not None and grant.access_token == result
        assert clock() < grant.expires_at


# -- failures stay bounded and typed -----------------------------------------------------------

def garbage(status: int = 200) -> Response:
    return Response(status, {"content-type": "text/html"}, b"<html>Welcome to the proxy</html>")


def test_a_thousand_failures_do_not_overflow_the_backoff() -> None:
    """Well past a thousand transient failures the backoff stays capped, and the errors
    stay IssuerError, before and after the token expired."""
    clock = Clock()
    refresher, _ = ready(clock, lifetime=10_000_000, lead=9_999_000, refresh_lifetime=None)
    clock.advance(2_000)
    for _ in range(1_200):
        clock.advance(BACKOFF_MAX + 0.01)
        token, sent = drive(refresher.ensure(), [refused(503)])
        assert token == "access-1" and len(sent) == 1
    clock.advance(10_000_000)
    for _ in range(1_200):
        clock.advance(BACKOFF_MAX + 0.01)
        with pytest.raises(IssuerError):
            drive(refresher.ensure(), [refused(503)])


def test_failing_first_grant_is_backed_off() -> None:
    """With no token at all, a failing issuer is not asked again before the backoff:
    callers meanwhile get the last error, without a request."""
    clock = Clock()
    refresher = Refresher(Script(clock, established=True), clock)
    with pytest.raises(IssuerError):
        drive(refresher.ensure(), [refused(503)])
    for _ in range(50):
        clock.advance(BACKOFF_FIRST / 100)
        with pytest.raises(IssuerError) as caught:
            drive(refresher.ensure(), [])
        assert caught.value.status == 503
    clock.advance(BACKOFF_FIRST / 2)
    assert drive(refresher.ensure(), [ok()])[0] == "access-1"


def test_expired_token_without_refresh_token_is_backed_off() -> None:
    """An expired grant that can only be replaced (client credentials, by key) does not
    hammer a failing issuer either."""
    clock = Clock()
    refresher, _ = ready(clock, established=True, refresh_lifetime=50, on_refused="issue")
    clock.advance(200)
    answers: list[Response | TransportFailure] = [refused(503)] * 1000
    for _ in range(400):  # 4 seconds of a caller every 10 ms
        clock.advance(0.01)
        with pytest.raises(IssuerError):
            drive(refresher.ensure(), answers)
    assert 1000 - len(answers) <= 4 * 2 + 1


@pytest.mark.parametrize("answer", [garbage(200), garbage(203), Response(
    200, {}, b"[" * 100_000), Response(302, {"location": "https://elsewhere.test"})])
def test_malformed_answer_to_a_refresh_keeps_the_valid_token(answer: Response) -> None:
    """A 2xx that cannot be read (or a redirect) during a refresh is not a refusal: the
    valid token is kept, the refresh token (which the issuer may have used) is not sent
    again, and the next attempt waits for the backoff."""
    clock = Clock()
    refresher, _ = ready(clock, on_refused="issue")
    clock.advance(85)
    token, sent = drive(refresher.ensure(), [answer])
    assert token == "access-1" and len(sent) == 1
    assert refresher.last_error is not None
    assert drive(refresher.ensure(), []) == ("access-1", [])
    clock.advance(BACKOFF_FIRST)
    token, sent = drive(refresher.ensure(), [ok()])
    assert token == "access-2"
    assert all((r.json or {}).get("refresh") != "refresh-1" for r in sent) or \
        not 200 <= answer.status < 300


def test_malformed_answer_after_expiry_raises_issuer_error() -> None:
    """Once the token has expired, a malformed answer surfaces as IssuerError."""
    clock = Clock()
    refresher, _ = ready(clock)
    clock.advance(150)
    with pytest.raises(IssuerError) as caught:
        drive(refresher.ensure(), [garbage()])
    assert caught.value.status == 200


def test_forced_refresh_respects_the_backoff() -> None:
    """``ensure(force=True)`` during the backoff sends nothing and raises the last error."""
    clock = Clock()
    refresher, _ = ready(clock)
    assert drive(refresher.ensure(force=True), [refused(503)])[0] == "access-1"
    with pytest.raises(IssuerError) as caught:
        drive(refresher.ensure(force=True), [])
    assert caught.value.status == 503
    assert refresher.token() == "access-1"  # still served to ordinary callers


def test_a_rejected_token_does_not_reset_the_backoff() -> None:
    """An API refusing the token (``expire_access_token``) does not let a caller skip
    the backoff of a failing issuer."""
    clock = Clock()
    refresher, _ = ready(clock)
    clock.advance(85)
    drive(refresher.ensure(), [refused(503)])
    refresher.expire_access_token()
    assert drive(refresher.ensure(), []) == ("access-1", [])


KINDS = ["ok", "401", "503", "429", "garbage", "connect", "timeout"]


def answer_of(kind: str) -> Response | TransportFailure:
    if kind == "garbage":
        return garbage()
    if kind == "429":
        return refused(429)
    return answer_for(kind)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(KINDS), st.floats(min_value=0, max_value=3,
                                                             allow_nan=False)),
                max_size=60),
       st.sampled_from(["issue", "raise"]))
def test_failures_space_the_requests_and_stay_typed(
        outcomes: list[tuple[str, float]], on_refused: str) -> None:
    """Whatever the issuer answers and whenever callers come, an attempt that failed is
    followed by no request before the backoff, and every failure is an IssuerError."""
    clock = Clock()
    refresher, _ = ready(clock, established=True, on_refused=on_refused, lifetime=10,
                         lead=2)
    failed_at: float | None = None
    for kind, step in outcomes:
        clock.advance(step)
        answers = [answer_of(kind), answer_of("ok" if kind == "401" else kind)]
        before = len(answers)
        try:
            drive(refresher.ensure(), answers)
        except IssuerError:
            pass
        sent = before - len(answers)
        if sent and failed_at is not None:
            assert clock() >= failed_at + BACKOFF_FIRST
        if sent:
            failed = refresher.last_error is not None or refresher.grant is None
            failed_at = clock() if failed else None


def test_a_flow_abandoned_mid_refresh_never_resends_its_refresh_token() -> None:
    """A shell that closes the flow while the refresh request is in flight (its caller
    was cancelled) may have delivered the refresh token: it is dropped, the access token
    still serves, and no later request carries it."""
    clock = Clock()
    refresher, _ = ready(clock, on_refused="reissue")
    clock.advance(85)
    flow = refresher.ensure()
    assert next(flow).json == {"refresh": "refresh-1"}
    flow.close()
    assert refresher.grant is not None and refresher.grant.refresh_token is None
    assert refresher.grant.access_token == "access-1"
    token, sent = drive(refresher.ensure(), [ok()])
    assert token == "access-2"
    assert [r.url for r in sent] == ["https://issuer.test/issue"]  # by key, not by refresh-1

"""Django REST framework's TokenAuthentication and HasScopes in a real Django project
(tests/integrations/djangoproject), through DRF's test client and once under a real
WSGI server on 127.0.0.1: settings from the AUTHTOKEN dict, users mapped by username,
RFC 6750 answers, scopes, refusals."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import pytest
from web_support import assert_no_token, forged

from authtoken import AuthToken, Security, open_security
from authtoken.testing import FakeClock

django = pytest.importorskip("django")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The test project set up once: its folder, Django's tables migrated."""
    folder = tmp_path_factory.mktemp("django")
    os.environ["AUTHTOKEN_TEST_DJANGO_DIR"] = str(folder)
    os.environ["DJANGO_SETTINGS_MODULE"] = "djangoproject.settings"
    django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)
    yield folder
    from authtoken.integrations.django import close_security

    close_security()


@pytest.fixture
def security(project: Path) -> Iterator[Security]:
    """The process's Security, as the project's settings open it; users reset after."""
    from django.contrib.auth.models import User

    from authtoken.integrations.django import close_security, get_security

    User.objects.create_user("alice")
    User.objects.create_user("42")
    yield get_security()
    close_security()
    User.objects.all().delete()


@pytest.fixture
def api() -> Any:
    from rest_framework.test import APIClient

    return APIClient()


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_user_and_principal(security: Security, api: Any) -> None:
    """request.user is the Django user named by the principal's user; request.auth is
    the Principal; an int user maps to the username '42'."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    answer = api.get("/me", **bearer(token))
    assert answer.status_code == 200
    assert answer.json() == {"username": "alice", "key": token[4:20],
                             "scopes": ["reports:read"]}
    numbered = security.authorize_token(AuthToken("x"), user=42)
    assert api.get("/me", **bearer(numbered)).json()["username"] == "42"


def test_missing_header_is_401_with_bearer_challenge(security: Security, api: Any) -> None:
    """No Authorization header: DRF answers 401 with 'WWW-Authenticate: Bearer'."""
    answer = api.get("/me")
    assert answer.status_code == 401
    assert answer["WWW-Authenticate"] == "Bearer"
    assert api.get("/health").status_code == 200


@pytest.mark.parametrize("value", [
    "", "Bearer", "Bearer a b", "Bearer {token},Bearer {token}", "Token {token}", "{token}",
    "Bearer {token}\u00a0", "Bearer\t{token}",
])
def test_malformed_header_is_401_invalid_request(security: Security, api: Any,
                                                 value: str) -> None:
    """A header that is not 'Bearer <one token>' is 401 invalid_request, not echoed."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    answer = api.get("/me", HTTP_AUTHORIZATION=value.format(token=token))
    assert answer.status_code == 401
    assert answer["WWW-Authenticate"].startswith('Bearer error="invalid_request"')
    assert_no_token([answer.content.decode()], token)


def test_another_scheme_goes_to_the_next_class(security: Security, api: Any) -> None:
    """An 'Authorization: Basic' header is left to the next authentication class (DRF's
    BasicAuthentication here), as DRF's own classes leave a scheme they do not handle:
    its user is authenticated, a wrong password is its 401, and HasScopes refuses a
    request no token authenticated (403); a bearer token still works beside it."""
    import base64

    from django.contrib.auth.models import User

    User.objects.create_user("bob", password="bob-pw")

    def basic(secret: str) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}

    answer = api.get("/who", **basic("bob:bob-pw"))
    assert answer.status_code == 200
    assert answer.json() == {"username": "bob", "by_token": False}
    wrong = api.get("/who", **basic("bob:nope"))
    assert wrong.status_code == 401
    assert wrong.json() == {"detail": "Invalid username/password."}
    assert api.get("/reports", **basic("bob:bob-pw")).status_code == 403
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    assert api.get("/who", **bearer(token)).json() == {"username": "alice", "by_token": True}
    assert api.get("/who", HTTP_AUTHORIZATION="Digest x").status_code == 401


def test_refused_tokens(security: Security, api: Any) -> None:
    """Forged and revoked tokens are 401 invalid_token; revocation is seen at once."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    answer = api.get("/me", **bearer(forged(token)))
    assert answer.status_code == 401
    assert answer["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert api.get("/me", **bearer(token)).status_code == 200
    security.revoke_auth_token(token)
    revoked = api.get("/me", **bearer(token))
    assert revoked.status_code == 401
    assert revoked.json() == {"detail": "the token was revoked"}


def test_expired_token(security: Security, project: Path, api: Any) -> None:
    """A token whose expiry has passed is 401 'the token has expired'."""
    past = FakeClock(datetime(2001, 1, 1, tzinfo=timezone.utc))
    with open_security(f"sqlite:///{project / 'tokens.db'}",
                       secret_keys=["django-test-key-new"], clock=past) as then:
        token = then.authorize_token(AuthToken("reports:read", expires="1h"), user="alice")
    answer = api.get("/me", **bearer(token))
    assert answer.status_code == 401
    assert answer.json() == {"detail": "the token has expired"}


def test_missing_scope_is_403_insufficient_scope(security: Security, api: Any) -> None:
    """HasScopes answers 403 insufficient_scope naming the view's required scope."""
    writer = security.authorize_token(AuthToken("reports:write"), user="alice")
    answer = api.get("/reports", **bearer(writer))
    assert answer.status_code == 403
    assert answer["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", '
        'error_description="the token lacks a required scope", scope="reports:read"')
    reader = security.authorize_token(AuthToken("reports:read"), user="alice")
    assert api.get("/reports", **bearer(reader)).json() == {"reader": "alice"}


def test_token_in_query_string_is_refused(security: Security, api: Any) -> None:
    """A token in the query string is 401 and never echoed, even beside a good header."""
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    for query in (f"access_token={token}", f"q={token}"):
        answer = api.get(f"/me?{query}", **bearer(token))
        assert answer.status_code == 401
        assert "query string" in answer.json()["detail"]
        assert_no_token([answer.content.decode(), str(answer.headers)], token)


def test_unknown_user_refused_unless_created(security: Security, project: Path,
                                             api: Any) -> None:
    """A token of a user with no Django account is 401; with CREATE_USERS the account is
    made (no usable password); an inactive user is refused."""
    from django.contrib.auth.models import User
    from django.test import override_settings

    from authtoken.integrations.django import get_security

    token = security.authorize_token(AuthToken("reports:read"), user="zoe")
    answer = api.get("/me", **bearer(token))
    assert answer.status_code == 401
    assert answer.json() == {"detail": "the token's user has no account here"}
    assert not User.objects.filter(username="zoe").exists()
    settings = {"DATABASE_URL": f"sqlite:///{project / 'tokens.db'}",
                "SECRET_KEYS": ["django-test-key-new"], "CREATE_USERS": True}
    with override_settings(AUTHTOKEN=settings):
        assert api.get("/me", **bearer(token)).json()["username"] == "zoe"
    zoe = User.objects.get(username="zoe")
    assert not zoe.has_usable_password()
    User.objects.filter(username="alice").update(is_active=False)
    inactive = get_security().authorize_token(AuthToken("reports:read"), user="alice")
    assert api.get("/me", **bearer(inactive)).status_code == 401


def test_settings_take_a_script_and_key_lists(security: Security, project: Path,
                                              api: Any) -> None:
    """SCRIPT_KEY makes the service log in as that script; SECRET_KEYS may be a list
    whose older key still verifies."""
    from django.test import override_settings

    bound_7 = security.authorize_token(AuthToken([7, "reports:read"]), user="alice")
    bound_8 = security.authorize_token(AuthToken([8, "reports:read"]), user="alice")
    assert api.get("/me", **bearer(bound_7)).status_code == 401  # no script: refused
    settings = {"DATABASE_URL": f"sqlite:///{project / 'tokens.db'}",
                "SECRET_KEYS": ["a-newer-key", "django-test-key-new"], "SCRIPT_KEY": 7}
    with override_settings(AUTHTOKEN=settings):
        assert api.get("/me", **bearer(bound_7)).status_code == 200
        answer = api.get("/me", **bearer(bound_8))
        assert answer.json() == {"detail": "the token is not for this service"}


def test_settings_take_a_code_digest(security: Security, project: Path, api: Any) -> None:
    """SCRIPT_DIGEST makes the service log in as code with that SHA-256, so a token
    pinned to that code (sha256:<digest>) is taken and one pinned to other code is not;
    without it a pinned token is refused."""
    import hashlib

    from django.test import override_settings

    digest = hashlib.sha256(b"the service's code").hexdigest()
    other = hashlib.sha256(b"other code").hexdigest()
    pinned = security.authorize_token(AuthToken(f"sha256:{digest} reports:read"),
                                      user="alice")
    elsewhere = security.authorize_token(AuthToken(f"sha256:{other}"), user="alice")
    assert api.get("/me", **bearer(pinned)).status_code == 401  # no digest: refused
    settings = {"DATABASE_URL": f"sqlite:///{project / 'tokens.db'}",
                "SECRET_KEYS": "django-test-key-new", "SCRIPT_DIGEST": digest}
    with override_settings(AUTHTOKEN=settings):
        assert api.get("/me", **bearer(pinned)).json()["username"] == "alice"
        answer = api.get("/me", **bearer(elsewhere))
        assert answer.json() == {"detail": "the token is not for this service"}
    from django.core.exceptions import ImproperlyConfigured

    from authtoken.integrations.django import get_security

    with override_settings(AUTHTOKEN={**settings, "SCRIPT_DIGEST": digest.upper()}), \
            pytest.raises(ImproperlyConfigured, match=r"SCRIPT_DIGEST.*lower case"):
        get_security()


def test_long_user_names_are_refused(security: Security, project: Path, api: Any) -> None:
    """A user longer than a username may be has no account, and none is made for it."""
    from django.contrib.auth.models import User
    from django.test import override_settings

    token = security.authorize_token(AuthToken("x"), user="u" * 151)
    settings = {"DATABASE_URL": f"sqlite:///{project / 'tokens.db'}",
                "SECRET_KEYS": "django-test-key-new", "CREATE_USERS": True}
    with override_settings(AUTHTOKEN=settings):
        assert api.get("/me", **bearer(token)).status_code == 401
    assert not User.objects.filter(username__startswith="uuu").exists()


def test_unreachable_store_is_503(security: Security, api: Any) -> None:
    """With the token store unreachable the answer is 503 with Retry-After, as FastAPI's
    and Starlette's are, naming neither the token nor the database password."""
    from django.test import override_settings

    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    settings = {"DATABASE_URL": "postgresql://svc:s3cret-pw@127.0.0.1:1/tokens",
                "SECRET_KEYS": "django-test-key-new"}
    with override_settings(AUTHTOKEN=settings):
        answer = api.get("/me", **bearer(token))
    assert answer.status_code == 503
    assert answer["Retry-After"] == "5"
    assert "s3cret-pw" not in answer.content.decode()
    assert_no_token([answer.content.decode()], token)


@pytest.mark.parametrize("setting", [
    "not a dict", {"DATABASE_URLS": "sqlite://"}, {"SECRET_KEYS": 5},
    {"SECRET_KEYS": " , "}, {"SCRIPT_KEY": "7"}, {"CREATE_USERS": "yes"},
    {"SCRIPT_DIGEST": 5}, {"SCRIPT_DIGEST": "AB" * 32}, {"SCRIPT_DIGEST": "abc"},
    {"SCRIPT_PATH": ""},
])
def test_bad_settings_are_improperly_configured(security: Security, setting: Any) -> None:
    """A malformed AUTHTOKEN setting is ImproperlyConfigured, naming what is wrong."""
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from authtoken.integrations.django import get_security

    with override_settings(AUTHTOKEN=setting), pytest.raises(ImproperlyConfigured):
        get_security()


def test_logins_counted_audited_not_logged(security: Security, api: Any,
                                           caplog: pytest.LogCaptureFixture) -> None:
    """Each request is a counted, audited login; neither Django's log nor ours holds
    the token, even for refusals."""
    caplog.set_level(logging.DEBUG)
    token = security.authorize_token(AuthToken("reports:read"), user="alice")
    for _ in range(2):
        assert api.get("/me", **bearer(token)).status_code == 200
    api.get(f"/me?q={token}")
    security.flush()
    key = token[4:20]
    assert security.get_auth_token(key).use_count == 2
    assert any(e.action == "login" and e.outcome == "ok"
               for e in security.audit_events(token_key=key))
    assert_no_token([caplog.text], token)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.slow
def test_served_by_a_real_wsgi_server(security: Security) -> None:
    """Under wsgiref on 127.0.0.1: the user, 403 for a missing scope, two Authorization
    headers refused (the server joins them with a comma)."""
    from django.core.handlers.wsgi import WSGIHandler

    server = make_server("127.0.0.1", 0, WSGIHandler(), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    token = security.authorize_token(AuthToken("files:list"), user="alice")
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.server_port}") as http:
            me = http.get("/me", headers={"Authorization": f"Bearer {token}"})
            assert me.json()["username"] == "alice"
            assert http.get("/reports", headers={"Authorization": f"Bearer {token}"}
                            ).status_code == 403
            twice = http.get("/me", headers=[("Authorization", f"Bearer {token}")] * 2)
            assert twice.status_code == 401
            assert 'error="invalid_request"' in twice.headers["www-authenticate"]
            assert_no_token([twice.text], token)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)

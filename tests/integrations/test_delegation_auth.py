"""``authtoken.httpx.DelegationAuth`` and ``authtoken.requests.DelegationAuth``: the
header a real server receives, sync and async, the https-or-loopback rule, refusals of
bad input, and a token string that shows nowhere.

Servers are real (uvicorn on 127.0.0.1); ``httpx.MockTransport`` and a recording
requests adapter are used only where no server may be reached -- to show that a refused
request is never handed to the transport at all.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from requests.adapters import HTTPAdapter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from support.served import served

from authtoken import AuthToken, InvalidArgument, MemoryRepository, Security
from authtoken.admin import DelegationTokenAuth, create_app
from authtoken.httpx import DelegationAuth as HttpxAuth
from authtoken.requests import DelegationAuth as RequestsAuth

AUTHS = [HttpxAuth, RequestsAuth]


async def _echo(request: Request) -> Response:
    return JSONResponse({"authorization": request.headers.getlist("authorization")})


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    """A real server that answers with the Authorization headers it received."""
    with served(Starlette(routes=[Route("/echo", _echo)])) as url:
        yield url


@pytest.fixture
def mem() -> Iterator[Security]:
    sec = Security(MemoryRepository(), secret_keys=["delegation-auth-test"])
    yield sec
    sec.close()


@pytest.fixture
def token(mem: Security) -> str:
    return mem.authorize_token(AuthToken("reports:read", expires="1d"), user="alice")


def _get(auth: Any, url: str, **options: Any) -> Any:
    """GET ``url`` with ``auth`` through the client library ``auth`` belongs to."""
    if isinstance(auth, HttpxAuth):
        return httpx.get(url, auth=auth, timeout=10, **options).json()
    return requests.get(url, auth=auth, timeout=10, **options).json()


# -- the header ---------------------------------------------------------------------------------
@pytest.mark.parametrize("auth_class", AUTHS)
def test_the_server_receives_one_bearer_header(auth_class: Any, token: str, echo: str,
                                               ) -> None:
    """A real server receives exactly ``Authorization: Bearer <token>``, once."""
    assert _get(auth_class(token), f"{echo}/echo") == {"authorization": [f"Bearer {token}"]}


@pytest.mark.parametrize("auth_class", AUTHS)
def test_a_token_read_from_a_file_keeps_no_newline(auth_class: Any, token: str, echo: str,
                                                   ) -> None:
    """Surrounding whitespace (a token file's final newline) is not sent."""
    sent = _get(auth_class(f"  {token}\n"), f"{echo}/echo")
    assert sent == {"authorization": [f"Bearer {token}"]}


@pytest.mark.parametrize("auth_class", AUTHS)
def test_it_replaces_an_authorization_header_already_set(auth_class: Any, token: str,
                                                         echo: str) -> None:
    """The auth's header wins over one the caller set: one header, ours."""
    sent = _get(auth_class(token), f"{echo}/echo",
                headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert sent == {"authorization": [f"Bearer {token}"]}


def test_httpx_async_client(token: str, echo: str) -> None:
    """One auth serves an ``AsyncClient`` as well as a ``Client``."""
    auth = HttpxAuth(token)

    async def main() -> list[Any]:
        async with httpx.AsyncClient(auth=auth, timeout=10) as http:
            answers = await asyncio.gather(*(http.get(f"{echo}/echo") for _ in range(3)))
        return [a.json() for a in answers]

    assert asyncio.run(main()) == [{"authorization": [f"Bearer {token}"]}] * 3
    with httpx.Client(auth=auth, timeout=10) as http:
        assert http.get(f"{echo}/echo").json() == {"authorization": [f"Bearer {token}"]}


@pytest.mark.parametrize("auth_class", AUTHS)
def test_the_admin_api_takes_it(auth_class: Any, mem: Security, token: str) -> None:
    """The admin application's authenticator accepts what it sends: the caller is the
    token's user."""
    app = create_app(mem, authenticate=DelegationTokenAuth(mem))
    with served(app) as url:
        answer = _get(auth_class(token), f"{url}/tokens")
    assert [t["user"] for t in answer["tokens"]] == ["alice"]


@pytest.mark.parametrize("auth_class", AUTHS)
def test_a_redirect_to_another_origin_gets_no_token(auth_class: Any, token: str,
                                                    echo: str) -> None:
    """The client library drops the header when a redirect leaves the origin (here
    another port of 127.0.0.1): the other server receives no token."""

    async def away(request: Request) -> Response:
        return RedirectResponse(f"{echo}/echo", status_code=302)

    with served(Starlette(routes=[Route("/away", away)])) as url:
        options = {"follow_redirects": True} if auth_class is HttpxAuth else {}
        assert _get(auth_class(token), f"{url}/away", **options) == {"authorization": []}


# -- where it may go ----------------------------------------------------------------------------
ALLOWED = ["https://reports.example.com/x", "HTTPS://reports.example.com/x",
           "http://127.0.0.1:8080/x", "http://127.1.2.3/x", "http://localhost:9/x",
           "http://LOCALHOST./x", "http://[::1]:8080/x"]
REFUSED = ["http://reports.example.com/x", "http://10.0.0.1/x", "http://[::2]/x",
           "http://127.0.0.1.nip.io/x", "http://localhost.example.com/x",
           "http://0.0.0.0:8080/x"]


def _httpx_sent(auth: HttpxAuth, url: str, sent: list[httpx.Request] | None = None,
                ) -> list[httpx.Request]:
    """Requests handed to the transport for one GET of ``url``, appended to ``sent``."""
    sent = [] if sent is None else sent

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as http:
        http.get(url)
    return sent


class _Recording(HTTPAdapter):
    """A requests adapter that records what it is given and sends nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any,
             ) -> requests.Response:
        self.sent.append(request)
        response = requests.Response()
        response.status_code = 204
        response.request = request
        return response


def _requests_sent(auth: RequestsAuth, url: str, adapter: _Recording | None = None,
                   ) -> list[requests.PreparedRequest]:
    adapter = adapter or _Recording()
    with requests.Session() as session:
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.get(url, auth=auth)
    return adapter.sent


@pytest.mark.parametrize("url", ALLOWED)
def test_https_and_loopback_http_carry_the_token(url: str, token: str) -> None:
    """https anywhere, and http to 127.0.0.0/8, ::1 or localhost, carry the header."""
    (sent,) = _httpx_sent(HttpxAuth(token), url)
    assert sent.headers["authorization"] == f"Bearer {token}"
    (prepared,) = _requests_sent(RequestsAuth(token), url)
    assert prepared.headers["Authorization"] == f"Bearer {token}"


@pytest.mark.parametrize("url", REFUSED)
def test_plain_http_elsewhere_is_refused_before_sending(url: str, token: str) -> None:
    """http:// to any other host raises InvalidArgument and nothing reaches the
    transport; the message names the rule and never the token."""
    sent: list[httpx.Request] = []
    adapter = _Recording()
    with pytest.raises(InvalidArgument, match="only over https://") as by_httpx:
        _httpx_sent(HttpxAuth(token), url, sent)
    with pytest.raises(InvalidArgument, match="only over https://") as by_requests:
        _requests_sent(RequestsAuth(token), url, adapter)
    assert sent == [] and adapter.sent == []
    for caught in (by_httpx, by_requests):
        assert token not in str(caught.value) and token not in repr(caught.value)


# -- bad input, and the string kept out of sight -----------------------------------------------
@pytest.mark.parametrize("auth_class", AUTHS)
@pytest.mark.parametrize("value", [None, 42, b"atk_", ["atk_"], object()])
def test_a_non_str_is_a_type_error(auth_class: Any, value: object) -> None:
    with pytest.raises(TypeError, match="str"):
        auth_class(value)


@pytest.mark.parametrize("auth_class", AUTHS)
def test_a_string_not_shaped_as_a_token_is_refused_unechoed(auth_class: Any, token: str,
                                                           ) -> None:
    """Empty, truncated, glued, inner whitespace, another scheme's value: refused with a
    message that says what to give and holds none of what was given."""
    bad = ["", " ", token[:-1], token + "x", f"Bearer {token}", token.replace(".", " ", 1),
           token.upper(), f"{token}\n{token}", "atk_" + "a" * 200, "ghp_" + "a" * 36]
    for value in bad:
        with pytest.raises(InvalidArgument, match="delegation token string") as caught:
            auth_class(value)
        message = f"{caught.value}{caught.value!r}{vars(caught.value)}"
        assert token not in message and (not value.strip() or value.strip() not in message)


@pytest.mark.parametrize("auth_class", AUTHS)
def test_the_string_shows_nowhere(auth_class: Any, token: str) -> None:
    """repr, str, format, vars and key show the token's key, never its string."""
    auth = auth_class(token)
    key = token[4:20]
    assert auth.key == key
    shown = [repr(auth), str(auth), f"{auth}", f"{auth!r}", repr(vars(auth)),
             repr([auth]), repr({"auth": auth})]
    for text in shown:
        assert token not in text and token.split(".")[1] not in text
    assert key in repr(auth)


@pytest.mark.parametrize("auth_class", AUTHS)
def test_it_cannot_be_pickled_or_copied(auth_class: Any, token: str) -> None:
    """Pickling (a task queue, a cache) and copying are refused, saying what to do."""
    auth = auth_class(token)
    for attempt in (lambda: pickle.dumps(auth), lambda: copy.copy(auth),
                    lambda: copy.deepcopy(auth)):
        with pytest.raises(TypeError, match="AUTHTOKEN_TOKEN") as caught:
            attempt()
        assert token not in str(caught.value)


def test_import_authtoken_imports_neither_client() -> None:
    """``import authtoken`` stays light: neither module, nor httpx or requests."""
    import subprocess
    import sys

    code = ("import sys, authtoken; "
            "print(sorted(m for m in ('httpx', 'requests', 'authtoken.httpx', "
            "'authtoken.requests') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"

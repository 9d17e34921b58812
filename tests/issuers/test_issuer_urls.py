"""The one rule for URLs that issuer adapters send credentials to (``issuers/_urls``).

Unit tests of the rule itself; each adapter's own tests (``test_oidc.py``,
``test_spatium.py``) check that it applies the rule, against real servers.
"""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from authtoken import InvalidArgument
from authtoken.issuers._urls import credential_url, is_loopback, same_issuer

SECRET = "pw-SENTINEL-91d0"


@pytest.mark.parametrize("url", [
    "https://id.example.com", "https://id.example.com:8443/realms/x/",
    "http://127.0.0.1:8080/x", "http://127.255.0.9", "http://localhost/x",
    "HTTP://LOCALHOST:1", "http://[::1]:8080/token", "https://[2001:db8::1]/t",
    "https://id.example.com/token?tenant=7",
])
def test_accepted(url: str) -> None:
    """https anywhere, http on a loopback host."""
    assert credential_url(url, "url") == (url.rstrip("/") if "?" not in url else url)


@pytest.mark.parametrize("url", [
    "http://id.example.com/token", "http://10.0.0.1/t", "http://[::2]/t",
    "http://127.0.0.1.example.com/t", "http://localhost.example.com/t",
    "http://[::ffff:127.0.0.1]/t", "http://127.1/t", "http://2130706433/t",
    "http://0x7f.0.0.1/t", "ftp://127.0.0.1/t", "//id.example.com/t", "id.example.com",
    f"https://user:{SECRET}@id.example.com/t", f"http://u:{SECRET}@127.0.0.1/t",
    "http://127.0.0.1\\@evil.example/t", "http://evil.example\\.127.0.0.1/t",
    "https://id.example.com/t#frag", "https://id.example.com /t", "https://ид.пример/t",
    "http://127.0.0.1:99999/t", "http://127.0.0.1:x/t", "https://[zz]/t", "https://",
    "http://127.0.0.1%2eevil.example/t", "",
    # hosts an HTTP client or resolver would choke on (UnicodeError, InvalidURL)
    "https://a..b/t", "https://" + "a" * 64 + ".example/t", "https://999.1.1.1/t",
    "https://xn--a.example/t", "https://xn--.example/t", "https://a-.example/t",
    "https://" + "a." * 127 + "example/t",
])
def test_refused(url: str) -> None:
    """Plain http off loopback, credentials in the URL and anything the check could
    misread are refused, without echoing a password."""
    with pytest.raises(InvalidArgument) as info:
        credential_url(url, "token_url")
    assert SECRET not in str(info.value)
    assert "token_url" in str(info.value)


def test_not_a_str_is_a_type_error() -> None:
    """A non-str URL is a TypeError (ArgumentTypeError)."""
    with pytest.raises(TypeError):
        credential_url(b"https://id.example.com", "url")


def test_http_from_an_https_origin_is_a_downgrade_even_on_loopback() -> None:
    """A URL read over https may not be http, not even on loopback; from an http
    (loopback) origin, an https URL elsewhere is fine."""
    with pytest.raises(InvalidArgument) as info:
        credential_url("http://127.0.0.1/t", "token_endpoint",
                       origin="https://id.example.com/.well-known/openid-configuration")
    assert "downgrade" in str(info.value)
    assert credential_url("https://id.example.com/t", "token_endpoint",
                          origin="http://127.0.0.1/x") == "https://id.example.com/t"
    assert credential_url("http://127.0.0.1/t", "token_endpoint",
                          origin="http://127.0.0.1/x") == "http://127.0.0.1/t"


def test_a_base_url_has_no_query() -> None:
    """Paths are appended to a base URL, so a query in it is refused."""
    with pytest.raises(InvalidArgument):
        credential_url("https://id.example.com/?x=1", "authority", base=True)


def test_the_refusal_says_how_to_fix_it() -> None:
    """The message names the host, https and the loopback exception."""
    with pytest.raises(InvalidArgument) as info:
        credential_url("http://auth.example.test/token", "token_url")
    message = str(info.value)
    assert "https://" in message and "auth.example.test" in message and "loopback" in message


def test_is_loopback() -> None:
    """127.0.0.0/8, ::1 and localhost, nothing else."""
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LocalHost"]))
    assert not any(map(is_loopback, ["128.0.0.1", "::2", "0.0.0.0", "localhost.example",
                                     "::ffff:127.0.0.1", "127.1", ""]))


HOSTS = st.one_of(
    st.sampled_from(["127.0.0.1", "127.9.8.7", "localhost", "LOCALHOST", "[::1]",
                     "id.example.com", "10.0.0.1", "[::2]", "127.0.0.1.example.com",
                     "[::ffff:127.0.0.1]", "127.1", "0177.0.0.1", "localhost.", "a_b.test"]),
    st.from_regex(r"[a-z0-9.\-_%\[\]:\\@]{1,20}", fullmatch=True),
    st.from_regex(r"(xn--)?[a-z0-9\-]{0,70}(\.[a-z0-9\-]{0,70}){0,3}", fullmatch=True),
)
URLS = st.builds(
    lambda scheme, userinfo, host, port, path: f"{scheme}://{userinfo}{host}{port}{path}",
    st.sampled_from(["http", "https", "HTTP", "Https", "ftp", "ws"]),
    st.sampled_from(["", "", "", "u@", f"u:{SECRET}@", ":@"]),
    HOSTS,
    st.sampled_from(["", "", ":80", ":8443", ":0", ":65536", ":", ":x"]),
    st.sampled_from(["", "/", "/token", "/a?b=c", "/#f", "/\\x", "/%2e%2e/", "/a b"]),
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(URLS, st.text(max_size=40)))
def test_what_is_accepted_is_what_an_http_client_sends_to(url: str) -> None:
    """For any text: an accepted URL is one httpx sends to the same place -- https, or
    http to a loopback host -- and never carries credentials; a refusal never echoes a
    password."""
    try:
        checked = credential_url(url, "url")
    except InvalidArgument as exc:
        refusal = str(exc)
        checked = None
    if checked is None:
        assert SECRET not in refusal
        return
    parsed = httpx.URL(checked)
    parsed.host.encode("idna")  # what a resolver does with the name: no UnicodeError
    assert parsed.scheme in ("http", "https")
    assert not parsed.userinfo
    if parsed.scheme == "http":
        assert is_loopback(parsed.host)
    assert SECRET not in checked


@pytest.mark.parametrize(("a", "b", "same"), [
    ("https://id.example.com/realms/x", "https://id.example.com/realms/x/", True),
    ("HTTPS://ID.Example.COM/realms/x", "https://id.example.com/realms/x", True),
    ("https://id.example.com:443/realms/x", "https://id.example.com/realms/x", True),
    ("http://127.0.0.1:80/r", "http://127.0.0.1/r", True),
    ("https://id.example.com/Realms/x", "https://id.example.com/realms/x", False),
    ("https://id.example.com:8443/realms/x", "https://id.example.com/realms/x", False),
    ("http://id.example.com/realms/x", "https://id.example.com/realms/x", False),
    ("https://id.example.com./realms/x", "https://id.example.com/realms/x", False),
    ("https://id.example.com/realms/x?a=1", "https://id.example.com/realms/x", False),
    ("https://evil@id.example.com/realms/x", "https://id.example.com/realms/x", False),
    ("https://id.example.com:443/realms/x", "https://id.example.com:80/realms/x", False),
])
def test_same_issuer_is_one_url_spelt_two_ways(a: str, b: str, same: bool) -> None:
    """The issuer check forgives what does not change the URL (case of scheme and host, a
    default port, a trailing slash) and nothing else."""
    assert same_issuer(a, b) is same
    assert same_issuer(b, a) is same

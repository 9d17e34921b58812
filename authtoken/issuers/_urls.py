"""Which URLs an issuer adapter may send a credential to: the one rule, for every adapter.

A password, client secret, refresh token, security token or merchant key goes only to an
``https://`` URL -- or to ``http://`` on a loopback host (``127.0.0.0/8``, ``::1``,
``localhost``), for tests and local development.  A URL learned from a document (a
space's OIDC pointer, a discovery document) is held to the same rule and may not turn an
``https://`` origin into ``http://``, not even on loopback.  Every URL argument and every
learned URL of ``authtoken.issuers`` goes through :func:`credential_url` before anything
is sent to it.

The grammar is deliberately narrow (printable ASCII, a host of letters, digits, dots,
hyphens and underscores or a bracketed IPv6 address, no ``user:password@``, no
backslash, no fragment) so that the host checked here is the host an HTTP client
connects to -- and one it can connect to: a name's labels are 1 to 63 characters that
neither start nor end with a hyphen, an ``xn--`` label is valid IDNA, and a host of
four dotted numbers is a valid IPv4 address (anything else would fail inside the HTTP
client or the resolver, with an error that is no ``IssuerError``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final
from urllib.parse import urlsplit

from .._errors import ArgumentTypeError, InvalidArgument
from .._redact import redact

__all__ = ["credential_url", "is_loopback", "same_issuer"]

_PRINTABLE: Final = re.compile(r"[\x21-\x7e]+\Z")
_HOST: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?\Z")
_LABEL: Final = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")
# What httpx takes for an IPv4 address (and then refuses unless it is a valid one).
_DOTTED_QUAD: Final = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+\Z")
_MAX_HOST: Final = 253
_MAX_LENGTH: Final = 2048
_LOOPBACK_RULE: Final = "http:// is allowed only on a loopback host (127.0.0.1, ::1, localhost)"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (as in a URL, IPv6 without brackets) is this machine for sure:
    ``localhost``, an address in ``127.0.0.0/8``, or ``::1``."""
    name = host.lower()
    if name in ("localhost", "localhost."):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv4Address):
        return address in ipaddress.IPv4Network("127.0.0.0/8")
    return address == ipaddress.IPv6Address("::1")


def credential_url(value: object, name: str, *, base: bool = False,
                   origin: str | None = None) -> str:
    """``value`` as a URL a credential may be sent to, without a trailing slash.

    ``name`` names the URL in messages (the URL itself is never quoted whole: it may hold
    a secret).  ``base``: other paths are appended to it, so it has no query either.
    ``origin``: the URL of the document ``value`` was read from; if that is ``https://``,
    so must ``value`` be.  Raises ``ArgumentTypeError`` for a non-``str`` and
    ``InvalidArgument`` saying what is wrong and how to fix it; the callers that read
    ``value`` from an issuer's answer turn that into ``IssuerError``.
    """
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a str, not {type(value).__name__}")
    if not value:
        raise InvalidArgument(f"{name} must not be empty")
    if len(value) > _MAX_LENGTH or not _PRINTABLE.match(value) or "\\" in value:
        raise InvalidArgument(
            f"{name} must be a URL of printable ASCII without spaces or backslashes "
            "(percent-encode anything else)")
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. a malformed [IPv6] host
        raise InvalidArgument(f"{name} is not a well-formed URL") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidArgument(f"{name} must be an absolute https:// URL, such as "
                              "https://id.example.com/...")
    if "@" in parts.netloc:
        raise InvalidArgument(
            f"{name} must not hold credentials (user:password@): pass them as arguments, "
            "which are never shown")
    if "#" in value:
        raise InvalidArgument(f"{name} must not have a #fragment")
    if base and parts.query:
        raise InvalidArgument(f"{name} is a base URL: it must not have a ?query")
    host = _host(parts.netloc, name)
    shown = redact(host)
    if parts.scheme == "http":
        if origin is not None and urlsplit(origin).scheme == "https":
            raise InvalidArgument(
                f"{name} names http://{shown} although it was read over https://: that "
                "would downgrade the connection; the issuer must publish https:// URLs")
        if not is_loopback(host):
            raise InvalidArgument(
                f"{name} must use https:// to reach {shown} ({_LOOPBACK_RULE}); "
                "credentials are never sent in clear")
    return value.rstrip("/") if not parts.query else value


def _host(netloc: str, name: str) -> str:
    """The host of ``netloc`` (IPv6 without brackets); ``InvalidArgument`` if the host or
    port is not one we can check."""
    host, port = netloc, ""
    if netloc.startswith("["):
        end = netloc.find("]")
        host, port = netloc[1:end] if end > 0 else "", netloc[end + 1:] if end > 0 else ""
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise InvalidArgument(f"{name} has a malformed IPv6 address") from None
    else:
        host, _, rest = netloc.partition(":")
        port = ":" + rest if _ else ""
        if not _HOST.match(host) or not _usable_name(host):
            raise InvalidArgument(
                f"{name} must name a host of letters, digits, dots and hyphens, in labels "
                "of at most 63 characters (IDNA-encode international names)")
    if port and not (port[0] == ":" and port[1:].isdigit() and 0 < int(port[1:]) < 65536):
        raise InvalidArgument(f"{name} has a malformed port")
    return host


def _usable_name(host: str) -> bool:
    """Whether a host that passed ``_HOST`` is one the HTTP client and the resolver take."""
    if _DOTTED_QUAD.match(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return False
        return True
    name = host[:-1] if host.endswith(".") else host
    if len(name) > _MAX_HOST:
        return False
    for label in name.split("."):
        if not _LABEL.match(label):
            return False
        if label[:4].lower() == "xn--" and not _idna_label(label):
            return False
    return True


def _idna_label(label: str) -> bool:
    """Whether an ``xn--`` label is a valid IDNA A-label (as the resolvers require)."""
    try:
        import idna  # httpx's own dependency: present wherever a request can be sent
    except ImportError:  # pragma: no cover - no httpx, so nothing is sent anyway
        return False
    try:
        idna.decode(label)
    except (idna.IDNAError, UnicodeError, ValueError):
        return False
    return True


_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}


def same_issuer(a: str, b: str) -> bool:
    """Whether two issuer URLs name the same issuer: equal once the scheme and host are
    lower-cased, a default port (``:443``, ``:80``) is dropped and trailing slashes are
    stripped -- the spellings of one URL (RFC 3986 §6.2.2-6.2.3).  The path, the query
    and everything else must match exactly."""
    return _issuer_key(a) == _issuer_key(b)


def _issuer_key(url: str) -> tuple[str, str, str, str] | str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    scheme = parts.scheme.lower()
    host = parts.hostname or ""  # lower-cased by urlsplit
    shown_port = "" if port is None or str(port) == _DEFAULT_PORTS.get(scheme) else str(port)
    if parts.username is not None or parts.password is not None or parts.fragment:
        return url
    rest = parts.path.rstrip("/") + ("?" + parts.query if parts.query else "")
    return scheme, host, shown_port, rest

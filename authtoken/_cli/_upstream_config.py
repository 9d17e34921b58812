"""The upstreams file of ``authtoken upstream link``: which upstreams exist, by name.

Theory of operation
-------------------
The file is TOML, one table a link name::

    [upstreams.space]
    type = "oidc"
    space = "https://lessons.example.org"

    [upstreams.keycloak]
    type = "oidc"
    authority = "https://id.example.org/realms/staff"
    client_id = "nightly"
    client_secret_file = "keycloak.secret"     # relative to this file's folder

    [upstreams.spatium]
    type = "spatium"
    url = "https://auth.example.org"
    token_id = "nightly"
    permissions = ["lessons:read"]

It is found at ``--upstreams FILE``, else ``AUTHTOKEN_UPSTREAMS``, else
``upstreams.toml`` beside the default database.  Whoever can write it decides where a
password typed for ``link`` is sent, so, like the key file, it must be a regular file of
the user's or root's that group and others cannot write.

It holds no secret: a ``client_secret`` written in it is refused (the file is copied,
backed up and shown in reviews); a confidential client's secret lives in a file of its
own, read as a token file is (private, the user's or root's).  Every refusal is
``InvalidArgument`` naming the file, the table and the key, never a value.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .._errors import InvalidArgument

if TYPE_CHECKING:  # the broker (httpx, cryptography) is imported only when linking
    from ..broker._upstreams import Upstream

__all__ = ["MAX_UPSTREAMS_FILE", "UPSTREAMS_ENV", "load_upstreams", "upstreams_path"]

UPSTREAMS_ENV: Final = "AUTHTOKEN_UPSTREAMS"
#: An upstreams file larger than this is refused: it is a few tables.
MAX_UPSTREAMS_FILE: Final = 64 * 1024
#: A link name, as the broker has it (it is also the scope ``upstream:<name>``).
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
_INLINE_REFUSAL: Final = (
    "a secret is never written in this file (it is copied, backed up and read by "
    "others): put it alone in a file of its own (chmod 600) and name that file with "
    "client_secret_file"
)
_KEYS: Final = {
    "oidc": ("type", "space", "authority", "client_id", "client_secret_file", "scope"),
    "spatium": ("type", "url", "token_id", "permissions", "leeway"),
}


def upstreams_path(option: str | None) -> Path:
    """The upstreams file: ``option``, else ``AUTHTOKEN_UPSTREAMS``, else
    ``upstreams.toml`` beside the default database."""
    if option:
        return Path(option)
    env = os.environ.get(UPSTREAMS_ENV, "").strip()
    if env:
        return Path(env)
    from .._defaults import default_database_path

    return default_database_path().parent / "upstreams.toml"


def _read(path: Path) -> str:
    where = f"the upstreams file {str(path)!r}"
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InvalidArgument(
            f"{where} does not exist: write one with a [upstreams.NAME] table for each "
            f"upstream (see docs/cli.md), or name another with --upstreams FILE or "
            f"{UPSTREAMS_ENV}") from None
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        raise InvalidArgument(f"{where} cannot be opened: {reason}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise InvalidArgument(f"{where} is not a regular file")
        if os.name == "posix":
            if info.st_uid not in (os.geteuid(), 0):
                raise InvalidArgument(
                    f"{where} belongs to another user (uid {info.st_uid}), who decides "
                    "where your password is sent: use a file of your own or root's")
            if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise InvalidArgument(
                    f"{where} is writable by other users, who could send your password to "
                    f"an upstream of theirs: run 'chmod go-w {path}' and check its content")
        raw = os.read(fd, MAX_UPSTREAMS_FILE + 1)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        raise InvalidArgument(f"{where} cannot be read: {reason}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_UPSTREAMS_FILE:
        raise InvalidArgument(f"{where} is larger than {MAX_UPSTREAMS_FILE} bytes: it is "
                              "not an upstreams file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"{where} is not UTF-8 text") from None


def _parse(text: str, path: Path) -> dict[str, Any]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10: the broker extra installs tomli
        import tomli as tomllib  # type: ignore[import-not-found,no-redef,unused-ignore]

    try:
        document: dict[str, Any] = tomllib.loads(text)
        return document
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message says where ("at line 3, column 9") and quotes no value.
        raise InvalidArgument(f"the upstreams file {str(path)!r} is not valid TOML: "
                              f"{exc}") from None


_TYPE_NAMES: Final = {bool: "a boolean", int: "an integer", float: "a number",
                      str: "a string", list: "an array", dict: "a table"}


def _kind(value: object) -> str:
    return _TYPE_NAMES.get(type(value), "a date or time")


class _Table:
    """One ``[upstreams.NAME]`` table, its refusals naming the file, table and key."""

    def __init__(self, path: Path, name: str, values: Mapping[str, Any]) -> None:
        self.path, self.name, self.values = path, name, values

    def error(self, key: str | None, problem: str) -> InvalidArgument:
        where = f"the upstreams file {str(self.path)!r}, [upstreams.{self.name}]"
        return InvalidArgument(f"{where}{'' if key is None else ' ' + key}: {problem}")

    def text(self, key: str, *, required: bool = True) -> str | None:
        value = self.values.get(key)
        if value is None:
            if required:
                raise self.error(key, "is missing")
            return None
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_kind(value)}")
        if not value.strip() or not value.isprintable():
            raise self.error(key, "must be a non-empty string on one line")
        return value

    def check(self, key: str, build: Callable[[], object]) -> None:
        """``build()``, its refusal named by ``key`` (the value is never quoted)."""
        try:
            build()
        except (InvalidArgument, TypeError, ValueError) as exc:
            raise self.error(key, str(exc)) from None


def _oidc(table: _Table) -> Upstream:
    from ..broker import OIDCUpstream

    space = table.text("space", required=False)
    if space is not None:
        for key in ("authority", "client_id", "client_secret_file", "scope"):
            if key in table.values:
                raise table.error(key, "is not used with space (the space names its "
                                       "issuer and client): give either space, or "
                                       "authority and client_id")
        table.check("space", lambda: OIDCUpstream.from_space(space))
        return OIDCUpstream.from_space(space)
    if "authority" not in table.values:
        raise table.error(None, "needs space, or authority and client_id")
    authority = table.text("authority")
    client_id = table.text("client_id")
    assert authority is not None
    assert client_id is not None
    table.check("authority", lambda: OIDCUpstream(authority, "client"))
    table.check("client_id", lambda: OIDCUpstream(authority, client_id))
    scope = table.text("scope", required=False)
    table.check("scope", lambda: OIDCUpstream(authority, client_id, scope=scope))
    secret_file = table.text("client_secret_file", required=False)
    secret = None
    if secret_file is not None:
        from .._tokenfile import read_token_file

        full = table.path.parent / Path(secret_file).expanduser()
        try:
            secret = read_token_file(str(full), label="the secret file")
        except InvalidArgument as exc:
            raise table.error("client_secret_file", str(exc)) from None
    return OIDCUpstream(authority, client_id, client_secret=secret, scope=scope)


def _spatium(table: _Table) -> Upstream:
    from ..broker import SpatiumUpstream

    url = table.text("url")
    token_id = table.text("token_id")
    assert url is not None
    assert token_id is not None
    permissions = table.values.get("permissions")
    if permissions is None:
        raise table.error("permissions", "is missing: an array of permission names, such "
                                         "as [\"lessons:read\"]")
    if not isinstance(permissions, list) or not permissions \
            or not all(isinstance(p, str) for p in permissions):
        raise table.error("permissions", "must be a non-empty array of strings")
    leeway = table.values.get("leeway", 60)
    if isinstance(leeway, bool) or not isinstance(leeway, (int, float)) \
            or not 0 < leeway <= 86_400:
        raise table.error("leeway", "must be a number of seconds, more than 0 and at most "
                                    "86400")
    table.check("url", lambda: SpatiumUpstream(url, "app", ["read"]))
    table.check("token_id", lambda: SpatiumUpstream(url, token_id, ["read"]))
    table.check("permissions", lambda: SpatiumUpstream(url, token_id, permissions))
    return SpatiumUpstream(url, token_id, permissions, leeway=float(leeway))


def _upstream(table: _Table) -> Upstream:
    if "client_secret" in table.values:
        raise table.error("client_secret", _INLINE_REFUSAL)
    kind = table.values.get("type")
    if kind is None:
        raise table.error("type", 'is missing: "oidc" or "spatium"')
    if kind not in _KEYS:
        raise table.error("type", 'must be "oidc" or "spatium"')
    for key in table.values:
        if key not in _KEYS[kind]:
            raise table.error(key, f"is not a key of a {kind} upstream; its keys are "
                                   f"{', '.join(_KEYS[kind])}")
    return _oidc(table) if kind == "oidc" else _spatium(table)


def load_upstreams(path: Path) -> dict[str, Upstream]:
    """The upstreams the file at ``path`` names, by link name; ``InvalidArgument`` when
    it cannot be read or is not as the module notes describe."""
    document = _parse(_read(path), path)
    where = f"the upstreams file {str(path)!r}"
    for key in document:
        if key != "upstreams":
            raise InvalidArgument(f"{where}: [{key}] is not known here; each upstream is "
                                  "a table [upstreams.NAME]")
    tables = document.get("upstreams")
    if not isinstance(tables, dict) or not tables:
        raise InvalidArgument(f"{where} names no upstream: add a table [upstreams.NAME] "
                              "for each")
    upstreams: dict[str, Upstream] = {}
    for name, values in tables.items():
        if not _NAME.match(name):
            raise InvalidArgument(
                f"{where}: the table name {name!r} cannot name an upstream: a name is 1 "
                "to 64 letters, digits, '_', '.' or '-', starting with a letter or digit; "
                "rename the table (it is also the scope upstream:NAME)")
        if not isinstance(values, dict):
            raise InvalidArgument(f"{where}: upstreams.{name} must be a table "
                                  f"[upstreams.{name}], not {_kind(values)}")
        upstreams[name] = _upstream(_Table(path, name, values))
    return upstreams

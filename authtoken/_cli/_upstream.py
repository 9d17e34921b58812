"""``authtoken upstream link|list|unlink``: an owner links an upstream account at a terminal.

Theory of operation
-------------------
``link`` reads the upstreams file (``_upstream_config``), then the credential -- the
password from the terminal (``getpass``, not echoed) or, when standard input is not a
terminal, from standard input (one line); or the refresh token from
``--refresh-token-file F`` (read as a token file is: private, the user's or root's) --
and hands both to the broker, which uses them once and keeps neither.  A password or a
refresh token is never an argument: ``--password`` and ``--refresh-token`` exist only
to be refused (exit 2), and ``main`` never repeats an argument it does not know (it
could be a password typed in the wrong place).

``list`` and ``unlink`` need no upstreams file: they work on the stored links only, so
a link whose upstream was removed from the file can still be seen and forgotten.

The broker (httpx, cryptography) is imported only when one of these commands runs, so
the command line starts as fast as it did without it.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, Final

from .._errors import InvalidArgument
from ._commands import json_mode, open_store, parse_user, usage_error
from ._output import out, print_json, table, user_text
from ._upstream_config import UPSTREAMS_ENV, load_upstreams, upstreams_path

if TYPE_CHECKING:
    from .._security import Security
    from ..broker import Broker

__all__ = ["MAX_PASSWORD", "add_upstream_commands", "cmd_link", "cmd_list", "cmd_unlink",
           "cmd_upstream", "read_password"]

#: Standard input holding more than this is no password.
MAX_PASSWORD: Final = 4096
_NOT_AN_ARGUMENT: Final = (
    "{what} is never given as an argument (it would be kept in the process list and the "
    "shell's history): {how}"
)
_ASK_HOW: Final = ("give --username N and type the password when asked, or pipe it on "
                   "standard input")
_REFRESH_HOW: Final = "put it in a file (chmod 600) and give --refresh-token-file F"


def read_password(username: str, name: str) -> str:
    """The password: asked for at the terminal (not echoed), else the one line standard
    input holds (a final newline is dropped).  ``InvalidArgument`` when there is none."""
    stream = sys.stdin
    isatty = getattr(stream, "isatty", None)
    if stream is not None and callable(isatty) and isatty():
        import getpass

        password = getpass.getpass(f"password of {username} at {name}: ")
    else:
        source = getattr(stream, "buffer", stream)
        try:
            raw = source.read(MAX_PASSWORD + 1) if source is not None else b""
        except (OSError, ValueError):
            raw = b""
        if len(raw) > MAX_PASSWORD:
            raise InvalidArgument(f"standard input holds more than {MAX_PASSWORD} bytes: "
                                  "a password is one line")
        if isinstance(raw, (bytes, bytearray)):
            try:
                password = bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidArgument("the password on standard input is not UTF-8") from None
        else:
            password = str(raw)
        password = password.removesuffix("\n").removesuffix("\r")
        if "\n" in password or "\r" in password:
            raise InvalidArgument("standard input holds more than one line: give the "
                                  "password alone, on one line")
    if not password:
        raise InvalidArgument("no password: type it when asked, or pipe it on standard "
                              "input")
    return password


def _broker(security: Security, upstreams: dict[str, Any]) -> Broker:
    from ..broker import Broker

    return Broker(security, upstreams)


def _link_name(name: str) -> str:
    from ..broker import LINK_NAME

    if not LINK_NAME.match(name):
        raise InvalidArgument("an upstream's name is 1 to 64 letters, digits, '_', '.' or "
                              "'-', starting with a letter or digit")
    return name


def cmd_upstream(args: argparse.Namespace) -> int:
    """``upstream`` without an action (argparse refuses it first)."""
    usage_error(args, "give an action: link, list or unlink")


def cmd_link(args: argparse.Namespace) -> int:
    """``upstream link NAME --user U (--username N | --refresh-token-file F)``."""
    if args.password_argument is not None:
        usage_error(args, _NOT_AN_ARGUMENT.format(what="a password", how=_ASK_HOW))
    if args.refresh_token_argument is not None:
        usage_error(args, _NOT_AN_ARGUMENT.format(what="a refresh token", how=_REFRESH_HOW))
    if (args.username is None) == (args.refresh_token_file is None):
        usage_error(args, "give --username N (the password is then asked for) or "
                          "--refresh-token-file F")
    user = parse_user(args.user)
    name = _link_name(args.name)
    path = upstreams_path(args.upstreams)
    upstreams = load_upstreams(path)
    if name not in upstreams:
        raise InvalidArgument(f"the upstreams file {str(path)!r} names no upstream {name!r}; "
                              f"it names {', '.join(sorted(upstreams))}")
    if args.refresh_token_file is not None:
        from .._tokenfile import read_token_file

        secret = read_token_file(args.refresh_token_file, label="--refresh-token-file")
    else:
        secret = read_password(args.username, name)
    with open_store(args) as security, _broker(security, upstreams) as broker:
        if args.refresh_token_file is not None:
            broker.link_refresh_token(user, name, secret)
        else:
            broker.link_password(user, name, args.username, secret)
        state = broker.links(user).get(name, "ok")
    if json_mode(args):
        print_json({"user": user, "name": name, "state": state})
    else:
        out(f"linked {name} for {user_text(user)}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """``upstream list --user U``: the user's links and their states."""
    user = parse_user(args.user)
    with open_store(args) as security, _broker(security, {}) as broker:
        links = broker.links(user)
    if json_mode(args):
        print_json({"links": links})
    elif not links:
        out(f"no upstream is linked for {user_text(user)}")
    else:
        table([("NAME", "STATE"), *sorted(links.items())])
    return 0


def cmd_unlink(args: argparse.Namespace) -> int:
    """``upstream unlink NAME --user U``: forget a link and its tokens (idempotent)."""
    user = parse_user(args.user)
    name = _link_name(args.name)
    with open_store(args) as security, _broker(security, {}) as broker:
        existed = broker.unlink(user, name)
    if json_mode(args):
        print_json({"user": user, "name": name, "unlinked": existed})
    else:
        out(f"unlinked {name}")
    return 0


def add_upstream_commands(upstream: argparse.ArgumentParser, common: argparse.ArgumentParser,
                          parser_class: type[argparse.ArgumentParser]) -> None:
    """``link``, ``list`` and ``unlink`` under the ``upstream`` command's parser."""
    commands = upstream.add_subparsers(dest="upstream_command", metavar="ACTION",
                                       required=True, parser_class=parser_class)

    def action(name: str, handler: Any, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], allow_abbrev=False, help=summary,
                                  description=summary)
        sub.set_defaults(handler=handler, command_parser=sub)
        sub.add_argument("--user", metavar="U", required=True,
                         help="the user whose link it is (digits: an integer user)")
        return sub

    sub = action("link", cmd_link,
                 "link U's account at upstream NAME (linking again replaces the link and "
                 "heals needs_relink)")
    sub.add_argument("name", metavar="NAME", help="the upstream, as the upstreams file "
                                                 "names it ([upstreams.NAME])")
    sub.add_argument("--username", metavar="N",
                     help="the account's username; the password is asked for at the "
                          "terminal (not echoed), or read from standard input")
    sub.add_argument("--refresh-token-file", metavar="F",
                     help="link by the refresh token in file F instead (a private file, "
                          "chmod 600)")
    sub.add_argument("--upstreams", metavar="FILE",
                     help=f"the upstreams file (default: {UPSTREAMS_ENV}, else "
                          "upstreams.toml beside the default database)")
    # Only to refuse them, saying why: a secret is never an argument.
    sub.add_argument("--password", dest="password_argument", nargs="?", const="",
                     help=argparse.SUPPRESS)
    sub.add_argument("--refresh-token", dest="refresh_token_argument", nargs="?", const="",
                     help=argparse.SUPPRESS)

    action("list", cmd_list, "list U's links and their states (ok, needs_relink)")

    sub = action("unlink", cmd_unlink,
                 "forget U's link NAME and its tokens (nothing to forget is no error)")
    sub.add_argument("name", metavar="NAME", help="the link's name")

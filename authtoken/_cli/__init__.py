"""The ``authtoken`` command line.

Theory of operation
-------------------
Every command opens one ``Security`` (``--database`` or ``open_security``'s default;
secret keys only from ``AUTHTOKEN_SECRET_KEYS`` or the default key file), does one thing
and closes it, so buffered usage is written before the process ends.

A token string is a password: given as an argument it would land in ``ps`` output and
shell history.  So the raw argument list is scanned *before* argparse sees it, and any
argument holding something shaped like a token string -- in any case, glued into a
longer argument, or without its ``atk_`` prefix -- is refused (exit 2) without being
echoed, the command ``exec`` runs included; the commands that need a token (``login``,
``exec``, ``revoke --token``, ``renew --token``) read it from ``--token-file F``, else
from standard input, or from ``AUTHTOKEN_TOKEN`` when standard input is a terminal or
holds only whitespace (``_input``).  Everything written to standard error goes through
:func:`authtoken._redact.redact` (see ``_output``).

Exit status: 0 done; 1 an ``AuthTokenError`` (``ClassName: message`` on stderr, one
line); 2 the command line does not parse.  With ``--json`` anywhere on the command line,
both are one JSON line on stderr instead: ``{"error": CLASS, "message": TEXT}``, with
``"UsageError"`` for exit 2.

Files: ``_parser`` (the parser and its usage errors), ``_commands`` (one function a
command), ``_tokens`` (how ``show`` and ``list`` print tokens), ``_pinning`` (the
script a command names, ``--bind-file``, ``check``), ``_scan`` (``scan``: finding token
strings in files, streamed), ``_input`` (reading a token string: ``--token-file``,
standard input, the environment), ``_exec`` (``exec``: a command run with a run token),
``_relay`` (how ``exec`` guards itself, starts its command and passes signals on),
``_demo`` (the narrated demo), ``_upstream`` and ``_upstream_config``
(``upstream``: linking accounts at upstreams named in a file), ``_output`` (what is written, and
how).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Final

from .._errors import AuthTokenError
from .._shape import BODY_PATTERN, KEY_CHARS, KEY_LENGTH, PREFIX
from ._commands import parse_user
from ._input import TOKEN_ENV, read_token
from ._output import JSON_ERRORS, PROG, fail, one_line
from ._parser import build_parser

__all__ = ["build_parser", "main", "parse_user", "read_token"]

# What a token string looks like, loosely: anything matching is refused as an argument.
# Its key and dot in any case, glued to anything; or its body without the prefix.
_TOKEN_ARGUMENT: Final = re.compile(
    rf"(?i:{PREFIX}[{KEY_CHARS}]{{{KEY_LENGTH}}}\.)|{BODY_PATTERN}"
)

_TOKEN_AS_ARGUMENT: Final = (
    "a token string cannot be given as an argument (it would leak into the process list "
    f"and shell history); pipe it on standard input or set {TOKEN_ENV}"
)

_UNKNOWN_UPSTREAM_ARGUMENTS: Final = (
    "{count} argument(s) not understood, not repeated here as one may be a password: a "
    "password is typed when asked or piped on standard input, never an argument"
)


def _command_name(arguments: Sequence[str]) -> str | None:
    """The command named in ``arguments``: the first word that is neither a global
    option nor the value of one."""
    skip = False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == "--database":
            skip = True
        elif not argument.startswith("-"):
            return argument
        elif argument == "--":
            return None
    return None


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _wants_json(arguments: Sequence[str]) -> bool:
    """Whether ``--json`` is among the options (known before parsing, for usage errors)."""
    for argument in arguments:
        if argument == "--":
            return False
        if argument == "--json":
            return True
    return False


@contextlib.contextmanager
def _quiet_broken_pipe() -> Iterator[None]:
    try:
        yield
    except BrokenPipeError:
        # The reader went away (``authtoken list | head``): stop writing, quietly.
        with contextlib.suppress(Exception):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        raise


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``authtoken`` command line with ``argv`` (default ``sys.argv[1:]``).

    Returns the exit status: 0 done, 1 an ``AuthTokenError`` (reported on stderr as
    ``ClassName: message``, or as JSON with ``--json``), 2 a command line that does not
    parse.
    """
    arguments = list(sys.argv[1:] if argv is None else argv)
    reset = JSON_ERRORS.set(_wants_json(arguments))
    try:
        return _run(arguments)
    finally:
        JSON_ERRORS.reset(reset)


def _run(arguments: list[str]) -> int:
    if any(_TOKEN_ARGUMENT.search(argument) for argument in arguments):
        fail("UsageError", _TOKEN_AS_ARGUMENT, text=f"{PROG}: error: {_TOKEN_AS_ARGUMENT}")
        return 2
    parser = build_parser()
    # 'exec' takes everything after the first '--' as its command, untouched by argparse.
    command: list[str] | None = None
    if _command_name(arguments) == "exec" and "--" in arguments:
        split = arguments.index("--")
        arguments, command = arguments[:split], arguments[split + 1:]
    try:
        if _command_name(arguments) == "upstream":
            # An argument 'upstream' does not know may be a password typed in the wrong
            # place: say so without repeating it (argparse would).
            args, unknown = parser.parse_known_args(arguments)
            if unknown:
                parser.error(_UNKNOWN_UPSTREAM_ARGUMENTS.format(count=len(unknown)))
        else:
            args = parser.parse_args(arguments)
    except SystemExit as exc:
        return _exit_code(exc.code)
    args.after_dashes = command
    handler: Callable[..., int] = args.handler
    try:
        with _quiet_broken_pipe():
            return handler(args)
    except SystemExit as exc:  # a usage error found after parsing
        return _exit_code(exc.code)
    except AuthTokenError as exc:
        fail(type(exc).__name__, one_line(str(exc)))
        return 1
    except BrokenPipeError:
        return 1
    except KeyboardInterrupt:
        fail("KeyboardInterrupt", "interrupted", text=f"{PROG}: interrupted")
        return 130

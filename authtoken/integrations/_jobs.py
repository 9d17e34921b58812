"""What the scheduler integrations share: token sources, one engine per process, and
the run of a delegated job.

Theory of operation
-------------------
A scheduled job is declared once, at import, with the script it runs as, the scope it
needs and where its *standing token* is kept.  The declaration holds no token string:
only a :class:`TokenSource`, which gives the string on the worker: a file read at each
run (as systemd's ``LoadCredential=`` hands one over; the checks are
``authtoken._tokenfile``'s), an environment variable taken out of the environment when
first read and kept in memory (so no process a job starts inherits it), or any
zero-argument callable such as a secrets-manager client.  So nothing that a scheduler
serialises -- a broker message, a job store row, a result -- can hold it.

At each run, :meth:`DelegatedJob.run` does on the worker:

1. read the standing token from its source (:class:`TokenSourceError` if it cannot);
2. log in with it for the job's script (the ``LoginError`` of the engine: a revoked,
   expired or used-up standing token stops the run here, before the body);
3. require the job's scope (``PermissionDenied`` naming what is missing);
4. mint a run token (``Session.run_token``) for the run's id, holding the job's scope
   and bindings to the job's script (:meth:`DelegatedJob.run_scope`: the standing
   token's that the script satisfies, or, when it has none, the script's own), and log
   in with it for the same script: the body's ``Session``, whose principal shows
   ``run_id`` and a ``chain`` from the standing token to the run token;
5. call the body with that session, then the job's own arguments, and revoke the run
   token when the body ends, however it ends.  A revocation the store refuses is
   retried a few times at once, then kept by key and retried at the next run in the
   process and by :func:`close_engines`, with a warning; it never replaces the body's
   outcome, so a scheduler never retries a body that did its work.

The engine (``Security``) is opened lazily, once per process, by :func:`engine_for`:
after a fork (Celery's prefork pool) the child opens its own, since a database
connection must not cross a fork.  :func:`close_engines` closes those opened here.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, Final

from .._errors import ArgumentTypeError, InvalidArgument, RepositoryError, TokenNotFound
from .._redact import redact
from .._run import RunToken
from .._scopes import Script, bindings_of, code_bindings_of, parse_scope
from .._security import Security
from .._session import ScriptRunner, Session
from .._token import AuthToken
from .._tokenfile import read_token_file

__all__ = [
    "DelegatedJob",
    "EnvToken",
    "SecurityFactory",
    "TokenFile",
    "TokenSource",
    "TokenSourceError",
    "close_engines",
    "engine_for",
    "from_env",
    "revoke_pending",
    "token_file",
]

#: How the declaration may name where its standing token lives.
HOW: Final = ("give token=token_file(path), token=from_env(NAME) or a zero-argument "
              "callable that returns the token string")

SecurityFactory = Callable[[], Security]


class TokenSourceError(InvalidArgument):
    """The job's token source gave no token string: a missing, unreadable or unsafe
    file, an unset variable, a callable that raised or returned something else.

    ``source`` names the source (``token_file('/run/…')``, ``from_env('NAME')``, the
    callable's name); the message says what to fix.  Neither holds a token string.
    """

    def __init__(self, message: str, *, source: str = "") -> None:
        super().__init__(message)
        self.source = redact(source)


class TokenFile:
    """A token source reading a file at each run, refused as ssh refuses a private key:
    it must be a regular file owned by this user (or root), that neither group nor
    others may read or write (systemd's credential, root's with an ACL entry granting
    this user alone, passes), ASCII and at most 4 KiB.  Surrounding whitespace is
    stripped."""

    __slots__ = ("path",)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if not isinstance(path, str):
            raise ArgumentTypeError(f"token_file needs a path, not {type(path).__name__}")
        if not path or "\x00" in path:
            raise InvalidArgument("token_file needs a non-empty path without NUL characters")
        if redact(path) != path:
            raise InvalidArgument("token_file got a token string, not a path: " + HOW)
        self.path = path

    def __repr__(self) -> str:
        return f"token_file({self.path!r})"

    def __call__(self) -> str:
        try:
            return read_token_file(self.path, label="the token file")
        except InvalidArgument as exc:  # said again as this source's error, unchained
            failure = TokenSourceError(str(exc), source=repr(self))
        raise failure


class EnvToken:
    """A token source: an environment variable, taken out of the environment.

    The variable is read when the source is made (the job's declaration, at import) and
    whenever it is set again, stripped, kept in this process's memory only, and removed
    from ``os.environ``: so no process a job starts inherits the standing token (a
    forked worker child shares the kept copy, as it shares all memory).  Set to blank,
    it forgets the kept copy.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if not isinstance(name, str):
            raise ArgumentTypeError(f"from_env needs a variable name, not {type(name).__name__}")
        if not name or "=" in name or "\x00" in name or redact(name) != name:
            raise InvalidArgument("from_env needs the name of an environment variable "
                                  "(such as 'EXPORT_TOKEN'), not its value")
        self.name = name
        _take_env(name)

    def __repr__(self) -> str:
        return f"from_env({self.name!r})"

    def __call__(self) -> str:
        text = _take_env(self.name)
        if not text:
            raise TokenSourceError(
                f"the environment variable {self.name} is not set or empty; set it to the "
                "standing token's string in the worker's environment before the worker "
                "starts (it is read once and taken out of the environment)",
                source=repr(self))
        return text


# Variables taken out of the environment, by name: shared by every source of that name,
# since the first one to read a variable removes it.
_env_lock = threading.Lock()
_env_kept: dict[str, str] = {}


def _take_env(name: str) -> str:
    """The variable ``name`` (taken out of the environment if it is set), else what was
    kept of it; ``""`` for neither."""
    with _env_lock:
        if name in os.environ:
            text = os.environ.pop(name).strip()
            if text:
                _env_kept[name] = text
            else:
                _env_kept.pop(name, None)
        return _env_kept.get(name, "")


def token_file(path: str | os.PathLike[str]) -> TokenFile:
    """A token source: the file at ``path``, read at each run (see :class:`TokenFile`)."""
    return TokenFile(path)


def from_env(name: str) -> EnvToken:
    """A token source: the environment variable ``name``, taken out of the environment
    and kept in memory (see :class:`EnvToken`)."""
    return EnvToken(name)


TokenSource = TokenFile | EnvToken | Callable[[], str]


def _source(token: object) -> Callable[[], str]:
    """``token`` as a token source, refused at declaration when it cannot be one."""
    if isinstance(token, (TokenFile, EnvToken)):
        return token
    if isinstance(token, os.PathLike):
        return TokenFile(token)
    if isinstance(token, (str, bytes)):
        # A token string here would sit in the code and travel wherever it goes; and a
        # bare str cannot say whether it names a file or a variable.
        raise ArgumentTypeError("token= takes no string (not a token string, nor a bare "
                                "path or variable name): " + HOW)
    if not callable(token):
        raise ArgumentTypeError(f"token is a token source, not {type(token).__name__}: {HOW}")
    return token


def _read_source(source: Callable[[], str]) -> str:
    """The token string ``source`` gives now, or ``TokenSourceError``."""
    shown = repr(source) if isinstance(source, (TokenFile, EnvToken)) else \
        getattr(source, "__qualname__", type(source).__name__)
    try:
        text = source()
    except TokenSourceError:
        raise
    except Exception as exc:  # told below, unchained: its cause may carry anything
        failure = TokenSourceError(
            f"the token source {shown} raised {type(exc).__name__}: {str(exc)[:200]}",
            source=shown)
    else:
        if isinstance(text, str) and text.strip():
            return text.strip()
        got = "an empty string" if isinstance(text, str) else type(text).__name__
        failure = TokenSourceError(
            f"the token source {shown} returned {got}, not the token string", source=shown)
    raise failure


# -- one engine per process -----------------------------------------------------------
log = logging.getLogger("authtoken.integrations")

_lock = threading.Lock()
_engines: dict[object, Security] = {}
#: Run tokens whose revocation failed, by key, with the factory of their engine.
_pending: dict[str, SecurityFactory | None] = {}
_pid = os.getpid()
#: Pauses between the quick retries of a run token's revocation (seconds).
REVOKE_PAUSES: Final = (0.1, 0.5)


def _forget_after_fork() -> None:
    """In a forked child, forget the parent's engines and pending revocations (the
    parent keeps both).  Called with ``_lock`` held."""
    global _pid
    if os.getpid() != _pid:
        _engines.clear()
        _pending.clear()
        _pid = os.getpid()


def _default_engine() -> Security:
    from .. import open_security  # the default, opened when first needed

    return open_security()


def engine_for(factory: SecurityFactory | None) -> Security:
    """The engine ``factory`` opens (``None``: ``open_security()``), once per process
    and per factory object (so give every job the same factory, not a lambda each).

    After a fork the child opens its own; an engine that failed to open is not kept,
    so the next run tries again.
    """
    with _lock:
        _forget_after_fork()
        engine = _engines.get(factory)
        if engine is None:
            engine = (factory or _default_engine)()
            if not isinstance(engine, Security):
                raise ArgumentTypeError(
                    f"security= must return a Security, not {type(engine).__name__}")
            _engines[factory] = engine
        return engine


def _revoke_run(run: RunToken, factory: SecurityFactory | None) -> None:
    """Revoke ``run``, retrying quickly; if storage keeps failing, keep its key for
    :func:`revoke_pending` and log a warning, without raising: the run is over, and
    its outcome must not be replaced by the store's."""
    for pause in (*REVOKE_PAUSES, None):
        try:
            run.revoke()
            return
        except RepositoryError:
            if pause is None:
                break
            time.sleep(pause)
    with _lock:
        _pending[run.key] = factory
    expires = "never" if run.expires is None else run.expires.isoformat()
    log.warning("could not revoke the run token %s of run %s: the token store failed; "
                "retried at the next run in this process and when its engines close, "
                "else it lives until %s (revoke it by hand: authtoken revoke %s)",
                run.key, redact(repr(run.run_id)), expires, run.key)


def revoke_pending() -> int:
    """Try again to revoke the run tokens whose revocation failed in this process; how
    many are still live.  Never raises for a store that still fails."""
    with _lock:
        _forget_after_fork()
        waiting = list(_pending.items())
    for key, factory in waiting:
        try:
            engine_for(factory).revoke_auth_token_by_key(key)
        except TokenNotFound:
            pass  # nothing left to revoke
        except RepositoryError:
            continue
        with _lock:
            _pending.pop(key, None)
        log.info("revoked the run token %s, which an earlier run left live", key)
    with _lock:
        return len(_pending)


def close_engines() -> None:
    """Revoke what is pending, then close (and so flush) every engine this process
    opened for jobs; the next run opens them again.  Called at interpreter exit and by
    the scheduler's shutdown.  Run tokens still pending are logged, and kept."""
    live = revoke_pending()
    with _lock:
        _forget_after_fork()
        engines = list(_engines.values())
        _engines.clear()
        keys = sorted(_pending)
    for engine in engines:
        engine.close()
    if live:
        log.warning("%d run token(s) could not be revoked, the token store failing: %s; "
                    "each lives until its expiry unless revoked by hand", live,
                    ", ".join(keys))


atexit.register(close_engines)


# -- the job --------------------------------------------------------------------------
def _script(script: object) -> Script:
    if isinstance(script, Script):
        return script
    if isinstance(script, str):
        return Script(path=script)
    if isinstance(script, int) and not isinstance(script, bool):
        return Script(key=script)
    raise ArgumentTypeError(
        f"script is a Script, a path (str) or a key (int), not {type(script).__name__}")


def _expiry(run_expires: object) -> str | timedelta | None:
    if run_expires is None:
        return None
    if not isinstance(run_expires, (str, timedelta)):
        raise ArgumentTypeError(
            f"run_expires is a duration such as '1h' or a timedelta, not "
            f"{type(run_expires).__name__}")
    AuthToken("run", expires=run_expires)  # InvalidArgument now, not at the first run
    return run_expires


class DelegatedJob:
    """A job's declaration: ``script``, the ``needs`` (scope) its runs require, its
    token ``source``, its engine ``factory`` and ``run_expires``.  Validates at once:
    ``TypeError`` for a value of the wrong type, ``ScopeError``/``InvalidArgument``
    for one that does not parse."""

    __slots__ = ("factory", "needs", "run_expires", "script", "source")

    def __init__(self, *, script: object, scope: object, token: object,
                 security: object = None, run_expires: object = None) -> None:
        self.script = _script(script)
        self.needs = parse_scope(scope)
        self.source = _source(token)
        if isinstance(security, Security):
            raise ArgumentTypeError(
                "security= takes a factory (a zero-argument callable returning a Security, "
                "opened in each worker process), not an open Security: pass "
                "'lambda: engine' if this process may share it")
        if security is not None and not callable(security):
            raise ArgumentTypeError(
                f"security= is a zero-argument callable returning a Security, not "
                f"{type(security).__name__}")
        self.factory: SecurityFactory | None = security
        self.run_expires = _expiry(run_expires)

    def __repr__(self) -> str:
        return redact(f"DelegatedJob(script={self.script!r}, scope={' '.join(self.needs)!r}, "
                      f"token={self.source!r})")

    def body_signature(self, body: object, *, skip: int = 0) -> inspect.Signature:
        """The signature a caller of ``body`` sees: the body's without its session (and
        the ``skip`` parameters before it).  ``TypeError`` for a body that is not a
        plain synchronous function taking the session as a positional parameter."""
        if not inspect.isfunction(body):
            raise ArgumentTypeError(
                f"a delegated job decorates a function, not {type(body).__name__}")
        if inspect.iscoroutinefunction(body) or inspect.isasyncgenfunction(body):
            raise ArgumentTypeError(
                f"{body.__qualname__} is async; a delegated job body is a plain function")
        signature = inspect.signature(body)
        params = list(signature.parameters.values())
        first = params[skip] if len(params) > skip else None
        if first is None or first.kind not in (inspect.Parameter.POSITIONAL_ONLY,
                                               inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                               inspect.Parameter.VAR_POSITIONAL):
            raise ArgumentTypeError(
                f"{body.__qualname__} must take the job's Session as its first "
                "argument: def job(session, ...)")
        keep = skip if first.kind is inspect.Parameter.VAR_POSITIONAL else skip + 1
        return signature.replace(parameters=params[keep:])

    def login(self, security: Security) -> Session:
        """The scheduler's session: the standing token logged in for the job's script,
        holding the job's scope (``TokenSourceError``, the engine's ``LoginError``, or
        ``PermissionDenied``)."""
        # No local name holds the standing token: error reporters record frame locals.
        session = ScriptRunner(security, self.script).login_by_auth_token(
            _read_source(self.source))
        assert session.principal is not None  # set by the login
        session.principal.require(*self.needs)
        return session

    def run_scope(self, held: Sequence[str]) -> tuple[str, ...]:
        """The run token's scope, for a standing token holding ``held``: the job's
        scope, plus the bindings that tie it to the job's script.

        Script bindings (``vfs:``/``ufs:``) and code bindings (``sha256:``) are chosen
        apart: a standing token holding some keeps those this script satisfies; one
        holding none gets this script's own (its key, its path; its digest when the
        script is pinned), so a run token that travels works for this script only.
        """
        mine = self.script.identifiers()
        scope = list(self.needs)
        for kind in (bindings_of, code_bindings_of):
            theirs = kind(held)
            # vfs: before ufs:, then by name: the same scope at every run
            chosen = [s for s in theirs if s in mine] if theirs else \
                sorted(kind(mine), key=lambda s: (not s.startswith("vfs:"), s))
            scope += [s for s in chosen if s not in scope]
        return tuple(scope)

    def run(self, run_id: str, body: Callable[..., Any], args: Sequence[Any],
            kwargs: Mapping[str, Any], *, before: Sequence[Any] = ()) -> Any:
        """Run ``body(*before, session, *args, **kwargs)`` as the standing token's user
        with a run token for ``run_id``, revoked when the body ends; the body's result.

        Raises what :meth:`login` raises before the body starts, and the body's own
        exception.  A revocation the token store refuses does not replace either: it is
        retried (see :func:`revoke_pending`) and logged by the run token's key.
        """
        security = engine_for(self.factory)
        revoke_pending()
        session = self.login(security)
        assert session.principal is not None
        options: dict[str, Any] = {}
        if self.run_expires is not None:
            options["expires"] = self.run_expires
        run = session.run_token(run_id, scope=self.run_scope(session.principal.scopes),
                                **options)
        try:
            job = ScriptRunner(security, self.script).login_by_auth_token(run.token)
            return body(*before, job, *args, **kwargs)
        finally:
            _revoke_run(run, self.factory)

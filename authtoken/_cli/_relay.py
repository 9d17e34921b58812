"""How ``authtoken exec`` guards itself, starts its command and passes signals on to it.

Theory of operation
-------------------
``exec`` holds secrets its command must not get: the standing token (in memory, often
in its environment too) and the store's secret keys.  Another process of the same user
could read them from ``/proc/<exec>/environ``, ``mem`` or ``fd/``, or attach a
debugger.  :func:`close_own_proc` marks ``exec`` not dumpable (Linux
``prctl(PR_SET_DUMPABLE, 0)``): its ``/proc`` files then belong to root and ptrace is
refused, to the command too.  ``execve`` makes the command dumpable again, with its own
memory and environment only.

Signals are *held*, not handled.  :meth:`Relay.holding` blocks the forwarded signals
(and ``SIGCHLD``) from before the run token exists until after it is revoked, so no
signal can end ``exec`` in between; a blocked signal stays pending until
:meth:`Relay.supervise` takes it with ``sigtimedwait``, which also tells who sent it
(``si_code``).  The command is started with ``posix_spawn`` and the mask ``exec`` had
before, so it never runs with those signals blocked, and a signal that came while it
started is passed on after: none is lost, none arrives too early.  ``exec`` alone
reaps its command, so the pid it signals cannot have been reused.

What is passed on: :data:`FORWARDED`, except

- a signal the caller ignored (``nohup``, a shell's background job): it is left
  ignored, so the command inherits the ignore;
- a signal the kernel sent the whole foreground process group of a terminal (Ctrl+C,
  Ctrl+\\, a resize, a hangup), when the command is in ``exec``'s group: the command
  got it too.  A hangup the kernel sends to a session's leader alone is passed on.

``SIGXCPU`` and ``SIGXFSZ`` are not passed on: the kernel sends them about ``exec``'s
own limits, and the command has its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Final

from ._output import fail

__all__ = ["FORWARDED", "NOT_EXECUTABLE", "NOT_FOUND", "Relay", "close_own_proc"]

#: The signals ``exec`` passes on to its command.
FORWARDED: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                    signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGWINCH)
# The ones that stop a run that has not started, and end the retries of a revocation.
_STOPPING: Final = frozenset(FORWARDED) - {signal.SIGWINCH}
# What a terminal sends its foreground process group (the kernel's si_code SI_KERNEL).
_GROUP_SENT: Final = frozenset({signal.SIGINT, signal.SIGQUIT, signal.SIGWINCH,
                                signal.SIGHUP})
_SI_KERNEL: Final = 0x80
# Python ignores these at start; a child gets them back at their default, as from
# subprocess.
_RESTORED: Final = tuple(getattr(signal, name) for name in ("SIGPIPE", "SIGXFSZ")
                         if hasattr(signal, name))
_PR_SET_DUMPABLE: Final = 4
# A safety net only: SIGCHLD wakes the wait when the command ends.
_WAKE_EVERY: Final = 1.0
NOT_FOUND: Final = 127
NOT_EXECUTABLE: Final = 126


def close_own_proc() -> bool:
    """Make this process not dumpable (Linux); whether it is now.  Elsewhere there is no
    ``/proc`` to close, and ``False`` is returned."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - every Linux libc has it
        return False
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return bool(prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) == 0)


def _inherited_fds() -> list[int]:
    """The descriptors above 2 that a child would inherit (Python opens its own
    non-inheritable; these came from ``exec``'s caller)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            numbers = [int(name) for name in os.listdir(folder) if name.isdigit()]
            break
    else:  # pragma: no cover - no listing: close a reasonable range
        numbers = list(range(3, 256))
    found = []
    for fd in numbers:
        if fd > 2:
            with contextlib.suppress(OSError):  # the listing's own, closed by now
                if os.get_inheritable(fd):
                    found.append(fd)
    return found


def _path_of(name: str, environment: dict[str, str]) -> str | None:
    """The file ``name`` names (as a shell finds it on ``PATH``), if it exists."""
    if "/" in name:
        return name if os.path.exists(name) else None
    return shutil.which(name, path=environment.get("PATH", os.defpath))


class Relay:
    """The forwarded signals, held from :meth:`holding` on and passed to the command by
    :meth:`supervise`."""

    def __init__(self) -> None:
        self.watched: frozenset[int] = frozenset()
        #: 127 or 126 when :meth:`spawn` could not start the command.
        self.failure = 0
        self._original: set[int] = set()

    @contextlib.contextmanager
    def holding(self) -> Iterator[Relay]:
        """Hold the forwarded signals the caller did not ignore, and ``SIGCHLD``."""
        self.watched = frozenset(s for s in FORWARDED
                                 if signal.getsignal(s) != signal.SIG_IGN)
        # An ignored SIGCHLD would reap the command before exec could read its status.
        child_ignored = signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN
        if child_ignored:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        held = {*self.watched, signal.SIGCHLD}
        self._original = set(signal.pthread_sigmask(signal.SIG_BLOCK, held))
        try:
            yield self
        finally:
            # What came since is spent: unblocked, it would end exec (or raise
            # KeyboardInterrupt) now that there is nothing left to do.
            spent = held - self._original
            while spent and signal.sigtimedwait(spent, 0) is not None:
                pass
            signal.pthread_sigmask(signal.SIG_SETMASK, self._original)
            if child_ignored:
                signal.signal(signal.SIGCHLD, signal.SIG_IGN)

    def stopped(self, timeout: float = 0) -> int | None:
        """A stopping signal taken within ``timeout`` seconds, if one came."""
        wanted = self.watched & _STOPPING
        if not wanted:
            time.sleep(timeout)
            return None
        info = signal.sigtimedwait(wanted, timeout)
        return None if info is None else info.si_signo

    def spawn(self, command: Sequence[str], environment: dict[str, str], *,
              stdin_null: bool) -> int | None:
        """Start ``command``; its pid, or ``None`` when it could not be started (said
        on stderr; :attr:`failure` is then 127 or 126)."""
        actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = []
        if stdin_null:
            actions.append((os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0))
        actions.extend((os.POSIX_SPAWN_CLOSE, fd) for fd in _inherited_fds())
        shown = repr(command[0])
        self.failure = 0
        try:
            return os.posix_spawnp(command[0], list(command), environment,
                                   file_actions=actions, setsigmask=self._original,
                                   setsigdef=_RESTORED)
        except FileNotFoundError:
            if _path_of(command[0], environment) is not None:
                # The file is there: what is missing is the interpreter its #! names.
                fail("CommandNotExecutable", f"{shown} cannot be run: bad interpreter "
                                             "(the program its '#!' line names does not "
                                             "exist)")
                self.failure = NOT_EXECUTABLE
                return None
            fail("CommandNotFound", f"{shown}: no such command or file (give a path, or "
                                    "a name found on PATH)")
            self.failure = NOT_FOUND
        except (PermissionError, IsADirectoryError):
            fail("CommandNotExecutable", f"{shown} cannot be run: permission denied, or "
                                         "not an executable file")
            self.failure = NOT_EXECUTABLE
        except (OSError, ValueError) as exc:
            errno = getattr(exc, "errno", None)
            reason = os.strerror(errno) if errno else "not a command line it can run"
            fail("CommandNotExecutable", f"{shown} cannot be run: {reason}")
            self.failure = NOT_EXECUTABLE
        return None

    def supervise(self, pid: int) -> int:
        """Pass the held signals on to ``pid`` until it ends; its exit status as a shell
        gives it (128+N when signal N ended it)."""
        waited = {*self.watched, signal.SIGCHLD}
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
                return 128 - code if code < 0 else code
            info = signal.sigtimedwait(waited, _WAKE_EVERY)
            if info is None or info.si_signo == signal.SIGCHLD:
                continue
            if not _reached_the_command(info.si_signo, info.si_code, pid):
                # Not yet reaped, so the pid is still the command's.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, info.si_signo)


def _reached_the_command(signum: int, code: int, pid: int) -> bool:
    """Whether the kernel sent ``signum`` to ``exec``'s whole process group (a
    terminal's Ctrl+C, Ctrl+\\, resize or hangup), the command included."""
    if code != _SI_KERNEL or signum not in _GROUP_SENT:
        return False
    if signum == signal.SIGHUP and os.getsid(0) == os.getpid():
        return False  # a terminal's hangup goes to the session's leader alone
    try:
        return os.getpgid(pid) == os.getpgrp()
    except OSError:
        return False

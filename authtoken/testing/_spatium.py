"""A Spatium-compatible authorization service on 127.0.0.1, for tests.

It speaks Spatium's wire format: ``POST {url}/api/...`` with JSON bodies, answers
``{"requestId": <the request-id header>, "data": {...}}``, and refusals
``{"requestId": ..., "error": {"code": ..., "message": ...}}`` with a 4xx/5xx status.
What the service does (accounts, merchants, rotating refresh tokens, the endpoints) is
``SpatiumService`` (``_spatium_service``); this module serves it over HTTP and adds
what tests need around it.

Test hooks: ``count(path)`` and ``calls`` (every request), ``refresh_attempts`` (which
refresh token each refresh presented), ``fail``/``drop``/``delay``/``garble`` (faults for
the next requests to a path), ``revoke(token_id)``, ``public_key_pem``, ``last_email_code`` and
an injectable ``clock``.

Needs the ``testing`` extra: ``pip install "authtoken[testing]"``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._clock import ClockOrSeconds
from ._spatium_service import (
    DEFAULT_FACTORS,
    PATHS,
    Merchant,
    RefreshAttempt,
    Refusal,
    SpatiumService,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["PATHS", "Call", "Merchant", "RefreshAttempt", "SpatiumAuthority"]

_MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Call:
    """One request the authority received, and the status it answered (0: dropped)."""

    path: str
    status: int
    request_id: str | None


@dataclass
class _Fault:
    kind: str  # "status", "drop", "delay" or "garble"
    status: int = 503
    seconds: float = 0.0


def _path(path: str) -> str:
    """``"permission/refresh"``, ``"/permission/refresh"`` or ``"/api/permission/refresh"``."""
    if not path.startswith("/"):
        path = "/" + path
    if not path.startswith("/api/"):
        path = "/api" + path
    if path not in PATHS:
        raise ValueError(f"unknown Spatium endpoint: {path}")
    return path



class SpatiumAuthority(SpatiumService):
    """A Spatium authorization service for tests, on ``127.0.0.1`` in a daemon thread.

    ``clock`` (aware datetimes, e.g. ``FakeClock``, or seconds) decides ``iat``/``exp``
    and every expiry check; lifetimes are seconds.  A merchant with every permission is
    made at once (``merchant``, ``merchant_key``, ``merchant_id``).  ``url`` is the base
    URL to give clients, ``http://127.0.0.1:PORT/authorization/v1``; ``stop()`` then
    ``start()`` serves again on the same port.
    """

    def __init__(self, *, clock: ClockOrSeconds | None = None,
                 permission_lifetime: float = 900, refresh_lifetime: float = 7200,
                 security_lifetime: float = 900, utility_lifetime: float = 900,
                 factors: Mapping[str, Any] = DEFAULT_FACTORS,
                 private_key: rsa.RSAPrivateKey | None = None,
                 base_path: str = "/authorization/v1", port: int = 0) -> None:
        super().__init__(clock=clock, permission_lifetime=permission_lifetime,
                         refresh_lifetime=refresh_lifetime,
                         security_lifetime=security_lifetime,
                         utility_lifetime=utility_lifetime, factors=factors,
                         private_key=private_key)
        self.base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self._faults: dict[str, deque[_Fault]] = {}
        self._counts: Counter[str] = Counter()
        self._calls: list[Call] = []
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = self.url if self._server is not None else "stopped"
        return f"SpatiumAuthority({state})"

    # -- running ---------------------------------------------------------------------------
    def start(self) -> SpatiumAuthority:
        """Serve on 127.0.0.1 (the same port as before after a ``stop``); returns self."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.authority = self
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"spatium-authority-{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: new connections are refused until ``start()``."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> SpatiumAuthority:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The base URL for clients: ``http://127.0.0.1:PORT/authorization/v1``."""
        if not self._port:
            raise RuntimeError("the authority has not been started")
        return f"http://127.0.0.1:{self._port}{self.base_path}"

    # -- faults ---------------------------------------------------------------------------------
    def fail(self, path: str, status: int = 503, *, times: int = 1) -> None:
        """The next ``times`` requests to ``path`` are answered with ``status``."""
        self._add_fault(path, _Fault("status", status=status), times)

    def drop(self, path: str, *, times: int = 1) -> None:
        """The next ``times`` requests to ``path`` are read, then the connection is closed
        without an answer (and the request is not processed)."""
        self._add_fault(path, _Fault("drop"), times)

    def delay(self, path: str, seconds: float, *, times: int = 1) -> None:
        """The next ``times`` requests to ``path`` wait ``seconds`` (real time), then are
        processed normally."""
        self._add_fault(path, _Fault("delay", seconds=seconds), times)

    def garble(self, path: str, *, times: int = 1) -> None:
        """The next ``times`` requests to ``path`` are answered 200 with a body that is not
        JSON (as a misconfigured proxy would), and the request is not processed."""
        self._add_fault(path, _Fault("garble", status=200), times)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add_fault(self, path: str, fault: _Fault, times: int) -> None:
        key = _path(path)
        with self._lock:
            self._faults.setdefault(key, deque()).extend(fault for _ in range(times))

    # -- observing -------------------------------------------------------------------------
    def count(self, path: str) -> int:
        """How many requests reached ``path`` (faulted ones included)."""
        key = _path(path)
        with self._lock:
            return self._counts[key]

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    # -- bookkeeping for the handler -------------------------------------------------------
    def _begin(self, path: str) -> _Fault | None:
        with self._lock:
            self._counts[path] += 1
            faults = self._faults.get(path)
            return faults.popleft() if faults else None

    def _record(self, path: str, status: int, request_id: str | None) -> None:
        with self._lock:
            self._calls.append(Call(path, status, request_id))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    authority: SpatiumAuthority


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    # HTTP/1.0: one request per connection, so stop() really ends the service.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read ``calls`` instead

    def do_GET(self) -> None:
        self._dispatch(read=False)

    def do_POST(self) -> None:
        self._dispatch(read=True)

    def _dispatch(self, *, read: bool) -> None:
        authority = self.server.authority
        request_id = self.headers.get("request-id") or str(uuid.uuid4())
        raw = b""
        if read:
            try:
                length = int(self.headers.get("content-length") or 0)
            except ValueError:
                length = -1
            if not 0 <= length <= _MAX_BODY:
                self._answer(None, 413, request_id, error=("PAYLOAD_TOO_LARGE", "bad length"))
                return
            raw = self.rfile.read(length)
        path = self.path.split("?", 1)[0]
        if authority.base_path and path.startswith(authority.base_path + "/"):
            path = path[len(authority.base_path):]
        elif authority.base_path:
            path = ""
        if path not in PATHS:
            self._answer(None, 404, request_id, error=("NOT_FOUND", "no such endpoint"))
            return
        if not read:
            self._answer(path, 405, request_id, error=("METHOD_NOT_ALLOWED", "use POST"))
            return
        fault = authority._begin(path)
        if fault is not None and fault.kind == "delay":
            time.sleep(fault.seconds)
        elif fault is not None and fault.kind == "drop":
            authority._record(path, 0, request_id)
            self.close_connection = True
            return
        elif fault is not None and fault.kind == "garble":
            authority._record(path, 200, request_id)
            page = b"<html><body>Welcome to the proxy</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)
            return
        elif fault is not None:
            self._answer(path, fault.status, request_id,
                         error=("SERVICE_UNAVAILABLE" if fault.status >= 500 else "INJECTED",
                                "injected failure"))
            return
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._answer(path, 400, request_id, error=("VALIDATION_ERROR",
                                                       "the body must be a JSON object"))
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            data = authority.handle_call(path, body, headers)
        except Refusal as refusal:
            self._answer(path, refusal.status, request_id, error=(refusal.code, refusal.message))
            return
        self._answer(path, 200, request_id, data=data)

    def _answer(self, path: str | None, status: int, request_id: str, *,
                data: dict[str, Any] | None = None,
                error: tuple[str, str] | None = None) -> None:
        payload: dict[str, Any] = {"requestId": request_id}
        if error is not None:
            payload["error"] = {"code": error[0], "message": error[1]}
        else:
            payload["data"] = data
        raw = json.dumps(payload).encode()
        if path is not None:
            self.server.authority._record(path, status, request_id)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("request-id", request_id)
        self.end_headers()
        self.wfile.write(raw)

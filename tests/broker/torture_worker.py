"""A job process for the broker's torture tests.

It reads one JSON line of configuration on standard input (the job's token and the
upstream's client secret travel there, never in argv), logs in, makes a broker, prints
``ready``, and waits for a ``go`` line; then asks for access tokens from ``threads``
threads for ``seconds`` and prints ``result <json>``: how many callers were served, the
errors by type, and per access token served (by sha256) its ``iat`` and when this
process first saw it.  The tokens themselves never reach standard output: the upstream's
answers are kept by ``torture_support.Capture`` in the test's private file.

Kill points, for the kill -9 tests (``"kill"`` in the configuration), all in this
script, none in the library: ``"lease"`` SIGKILLs the process right after it took the
link's refresh lease; ``"request"`` just before the refresh request leaves;
``"store"`` after the answer came back, before the new tokens are written (after
``kill_sleep`` seconds); ``"external"`` prints ``sending <sha256>`` as a refresh
request leaves, for the test to kill it while the server holds the request -- and should
the answer come back first (a loaded machine), dies before the store write all the same.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from typing import Any

import httpx
from broker_support import KEYS
from torture_support import (
    Capture,
    capturing_client,
    fingerprint,
    issued_at,
    presented_refresh_token,
)

from authtoken import AuthTokenError, Session, open_security
from authtoken.broker import Broker, OIDCUpstream, SpatiumUpstream


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def upstream_of(config: dict[str, Any]) -> OIDCUpstream | SpatiumUpstream:
    spec = config["upstream"]
    if spec["kind"] == "oidc":
        return OIDCUpstream(spec["issuer"], spec["client_id"],
                            client_secret=spec["client_secret"])
    return SpatiumUpstream(spec["url"], "nightly", ["reports:read"], leeway=1.0)


def arm(config: dict[str, Any], repository: Any) -> httpx.Client:
    """The broker's HTTP client, and the kill point of ``config`` in place."""
    kill = config.get("kill")

    def on_request(request: httpx.Request) -> None:
        token = presented_refresh_token(request)
        if token is None:
            return
        say(f"sending {fingerprint(token)}")
        if kill == "request":
            die()

    if kill == "lease":
        take_lease = repository.take_lease

        def take_then_die(*args: Any, **kwargs: Any) -> Any:
            link = take_lease(*args, **kwargs)
            if link is not None and link.lease_holder is not None:  # ours: the only worker
                say("leased")
                die()
            return link

        repository.take_lease = take_then_die
    if kill in ("store", "external"):  # external: should the test's kill come late
        def die_before_storing(*args: Any, **kwargs: Any) -> Any:
            say("answered")
            time.sleep(float(config.get("kill_sleep", 0)))
            die()

        repository.finish_refresh = die_before_storing
    return capturing_client(Capture(config["capture"]), on_request)


def main() -> None:
    config = json.loads(sys.stdin.readline())
    name = config["name"]
    served = 0
    errors: list[str] = []
    seen: dict[str, dict[str, float]] = {}
    guard = threading.Lock()
    with open_security(config["url"], secret_keys=KEYS) as security:
        session = Session(security)
        session.login_by_auth_token(config["token"])
        client = arm(config, security.repository)
        with client, Broker(security, {name: upstream_of(config)}, client=client,
                            lease=float(config["lease"])) as broker:
            # Warm up: the first call that writes a link imports the SQL layer, which
            # costs a few seconds of CPU when eight processes do it at once; a job
            # started long before its refresh pays it off the clock too.
            broker.links("alice")
            say("ready")
            if sys.stdin.readline().strip() != "go":
                return
            deadline = time.monotonic() + float(config["seconds"])

            def ask() -> None:
                nonlocal served
                while time.monotonic() < deadline:
                    try:
                        token = broker.access_token(session, name)
                    except AuthTokenError as exc:
                        with guard:
                            errors.append(type(exc).__name__)
                    else:
                        key = fingerprint(token)
                        with guard:
                            served += 1
                            if key not in seen:
                                seen[key] = {"iat": issued_at(token), "first": time.time()}
                    time.sleep(0.005)

            workers = [threading.Thread(target=ask) for _ in range(int(config["threads"]))]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
    say("result " + json.dumps({"served": served, "errors": errors, "tokens": seen}))


if __name__ == "__main__":
    main()

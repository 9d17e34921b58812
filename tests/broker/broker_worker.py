"""A job process for the broker's multi-process tests: asks for access tokens from
several threads until a deadline, and prints what it got as JSON.

``python broker_worker.py DB_URL SPATIUM_URL THREADS SECONDS LEASE`` with the job's
token string on standard input (never in argv).
"""

from __future__ import annotations

import json
import sys
import threading
import time

from broker_support import KEYS

from authtoken import AuthTokenError, Session, open_security
from authtoken.broker import Broker, SpatiumUpstream


def main() -> None:
    url, spatium, threads, seconds, lease = sys.argv[1:6]
    token = sys.stdin.read().strip()
    served: list[str] = []
    errors: list[str] = []
    with open_security(url, secret_keys=KEYS) as security:
        session = Session(security)
        session.login_by_auth_token(token)
        upstream = SpatiumUpstream(spatium, "nightly", ["reports:read"], leeway=1.0)
        with Broker(security, {"spatium": upstream}, lease=float(lease)) as broker:
            print("ready", flush=True)
            deadline = time.monotonic() + float(seconds)

            def ask() -> None:
                while time.monotonic() < deadline:
                    try:
                        served.append(broker.access_token(session, "spatium"))
                    except AuthTokenError as exc:
                        errors.append(type(exc).__name__)
                    time.sleep(0.005)

            workers = [threading.Thread(target=ask) for _ in range(int(threads))]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
    print(json.dumps({"served": len(served), "distinct": len(set(served)),
                      "errors": errors}), flush=True)


if __name__ == "__main__":
    main()

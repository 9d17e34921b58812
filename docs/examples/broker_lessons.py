"""A nightly job reads alice's lessons from her space with neither her password nor a
refresh token in its environment: the broker holds her linked account for it.

Needs ``pip install "authtoken[broker,testing]"`` (the broker, and the test provider).
Run it with ``python docs/examples/broker_lessons.py``; it takes a few seconds, on
127.0.0.1 only.  ``OIDCProvider`` (from ``authtoken.testing``) plays the identity
provider (rotating refresh tokens) and the space with its lesson API; access tokens
live 4 seconds so that a refresh happens while you watch.  Two parts, in two processes:

- *alice* (this process): links her space account once -- her password is sent once
  and kept nowhere -- and authorizes a standing token for the nightly job with the
  scope ``lessons:read upstream:space``;
- the *nightly job* (``broker_lessons.py job SPACE_URL``), started with nothing but
  ``AUTHTOKEN_TOKEN``, ``AUTHTOKEN_DATABASE_URL`` and ``AUTHTOKEN_SECRET_KEYS`` in its
  environment: it logs in with its token and reads lessons through ``httpx`` with
  ``auth=broker.auth(session, "space")``.

Night after night: the first run is served the stored access token, a second one too
(no refresh), a run after the token expired refreshes it once; alice revokes the job's
token while it runs and its next request is refused at once (``TokenRevoked``); the
provider refuses a refresh and the link says ``needs_relink`` until alice links again.
The audit trail holds an ``upstream`` event for each token given out or refused.  No
token, password or JWT is printed, and the database holds none in clear.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from authtoken import AuthToken, AuthTokenError, Script, ScriptRunner, Security, open_security
from authtoken.broker import Broker, OIDCUpstream
from authtoken.testing import OIDCProvider

LIFETIME = 4.0  # expires_in of the access tokens, in seconds (a real space: minutes)
JOB_SCOPE = "lessons:read upstream:space"
NIGHTLY = Script(key=7, path="/jobs/nightly-lessons.py")


# -- the nightly job: its own process, its token in the environment ---------------------
def nightly_job(space: str) -> int:
    """Read two lessons as the token's user; wait for a line on stdin in between when
    asked to (``pause``), so that alice can act while the job runs."""
    # The broker's log lines name the link, never a token or the user's password.
    logging.basicConfig(stream=sys.stdout, format="  job log: %(name)s: %(message)s")
    names = sorted(k for k in os.environ if k.startswith("AUTHTOKEN_"))
    print(f"  job: my environment holds {', '.join(names)}")
    with open_security() as security, \
            Broker(security, {"space": OIDCUpstream.from_space(space)}) as broker:
        session = ScriptRunner(security, NIGHTLY).login_by_auth_token(
            os.environ.pop("AUTHTOKEN_TOKEN"))
        assert session.principal is not None
        print(f"  job: logged in as {session.principal.user!r}")
        try:
            with httpx.Client(auth=broker.auth(session, "space")) as api:
                for number in (1, 2):
                    lesson = api.get(f"{space}/api/lessons/{number}").json()["data"]
                    print(f"  job: lesson {lesson['id']} of space {lesson['space_id']} "
                          f"read as {lesson['user']!r}")
                    if number == 1 and "pause" in sys.argv:
                        print("  job: (waiting)", flush=True)
                        sys.stdin.readline()
        except AuthTokenError as exc:  # the message never holds a token
            print(f"  job: refused: {type(exc).__name__}")
            return 1
    return 0


# -- alice's side ---------------------------------------------------------------------------
def job_environment(token: str) -> dict[str, str]:
    """All the job's process gets: its token, where the store is, and the store's keys."""
    return {"AUTHTOKEN_TOKEN": token,
            "AUTHTOKEN_DATABASE_URL": os.environ["AUTHTOKEN_DATABASE_URL"],
            "AUTHTOKEN_SECRET_KEYS": os.environ["AUTHTOKEN_SECRET_KEYS"]}


def start_job(space: str, token: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own interpreter and file, no shell
        [sys.executable, __file__, "job", space, *extra], env=job_environment(token),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def run_job(space: str, token: str) -> int:
    job = start_job(space, token)
    output, _ = job.communicate(timeout=60)
    print(output, end="")
    return job.returncode


def counts(provider: OIDCProvider) -> str:
    return (f"token requests: password grant {provider.counts['password']}, "
            f"refresh grant {provider.counts['refresh_token']}")


def in_clear(folder: Path, secrets_: list[str]) -> bool:
    """Whether any of ``secrets_``, or a JWT, is in the database files in clear."""
    stored = b"".join(p.read_bytes() for p in folder.glob("tokens.db*"))
    return b"eyJhbGci" in stored or any(s.encode() in stored for s in secrets_)


def main() -> None:
    password = secrets.token_urlsafe(16)  # in real life: alice types it, once
    with tempfile.TemporaryDirectory() as folder, \
            OIDCProvider(password=password, lifetime=LIFETIME) as provider:
        os.environ["AUTHTOKEN_DATABASE_URL"] = f"sqlite:///{Path(folder) / 'tokens.db'}"
        os.environ["AUTHTOKEN_SECRET_KEYS"] = secrets.token_urlsafe(32)  # throwaway
        space = provider.space_url
        with open_security() as security, \
                Broker(security, {"space": OIDCUpstream.from_space(space)}) as broker:
            story(security, broker, provider, Path(folder), password)


def story(security: Security, broker: Broker, provider: OIDCProvider, folder: Path,
          password: str) -> None:
    space = provider.space_url
    # Once, by alice: link her account (the password grant), authorize the job.
    broker.link_password("alice", "space", "alice", password)
    due = time.monotonic() + LIFETIME  # the access token is due before this
    print(f"alice links her space account: {broker.links('alice')}")
    job_token = AuthToken(JOB_SCOPE, description="nightly lessons", expires="30d")
    token = security.authorize_token(job_token, user="alice")
    assert job_token.key is not None
    first_key, strings = job_token.key, [token]
    print(f"alice authorizes the nightly job: scope {JOB_SCOPE!r}")

    given = job_environment(token)
    print(f"the job's environment: {', '.join(sorted(given))}")
    refresh_tokens = list(provider.refresh_tokens)
    hidden = not any(s in value for value in given.values()
                     for s in [password, *refresh_tokens])
    assert hidden
    print(f"neither the password nor a refresh token is in it: {hidden}")

    print("night 1:")
    run_job(space, token)
    print(f"  {counts(provider)}")
    print("night 2, while the access token is fresh:")
    run_job(space, token)
    print(f"  {counts(provider)} -- the stored token served")

    time.sleep(max(0.0, due - time.monotonic()))
    print("night 3, after the access token expired:")
    run_job(space, token)
    due = time.monotonic() + LIFETIME  # the refreshed token is due before this
    print(f"  {counts(provider)} -- one refresh, the new tokens sealed in the store")
    print(f"  refresh tokens presented twice: {provider.reused_refresh_tokens}")

    print("night 4: alice revokes the job's token while it runs")
    job = start_job(space, token, "pause")
    assert job.stdout is not None
    for line in job.stdout:
        print(line, end="")
        if "(waiting)" in line:
            break
    security.revoke_auth_token_by_key(first_key)
    output, _ = job.communicate("go on\n", timeout=60)
    print(output, end="")
    print(f"  the job exited {job.returncode}")

    # The provider refuses the next refresh (say, alice's sessions were ended there).
    job_token = AuthToken(JOB_SCOPE, description="nightly lessons", expires="30d")
    token = security.authorize_token(job_token, user="alice")
    assert job_token.key is not None
    second_key = job_token.key
    strings.append(token)
    provider.refuse_refresh = True
    time.sleep(max(0.0, due - time.monotonic()))
    print("night 5, the provider refuses the refresh:")
    run_job(space, token)
    print(f"  alice sees {broker.links('alice')}")
    provider.refuse_refresh = False
    broker.link_password("alice", "space", "alice", password)
    print(f"alice links again: {broker.links('alice')}")
    print("night 6:")
    run_job(space, token)

    print(f"the database holds no password, refresh token or JWT in clear: "
          f"{not in_clear(folder, [password, *provider.refresh_tokens])}")
    audit(security, {first_key: "first token", second_key: "second token"},
          [password, *strings, *provider.refresh_tokens])
    print("done")


def audit(security: Security, names: dict[str, str], secrets_: list[str]) -> None:
    """The upstream events of alice's tokens, counted by token, outcome and reason."""
    tally: Counter[tuple[str, str, str, str]] = Counter()
    events = [e for e in security.audit_events(user="alice") if e.action == "upstream"]
    for event in events:
        assert event.token_key is not None
        tally[(names[event.token_key], event.actor or "", event.outcome,
               event.reason or "-")] += event.count
    print("audit trail, upstream events (token, actor, outcome, reason: how many):")
    for (name, actor, outcome, reason), count in sorted(tally.items()):
        print(f"  {name}, {actor}, {outcome}, {reason}: {count}")
    shown = "".join(repr(e) for e in events)
    clean = "eyJhbGci" not in shown and not any(s in shown for s in secrets_)
    print(f"no token, password or JWT in any event: {clean}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["job"]:
        sys.exit(nightly_job(sys.argv[2]))
    main()

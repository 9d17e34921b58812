"""Brokered upstream credentials: a delegated job reaches an upstream as its user.

::

    from authtoken.broker import Broker, SpatiumUpstream

    broker = Broker(security, {"spatium": SpatiumUpstream(url, "reports", ["read"])})
    broker.link_password("alice", "spatium", "alice", password)   # once, by the owner
    ...
    session = ScriptRunner(security, script).login_by_auth_token(job_token)
    httpx.get(api_url, auth=broker.auth(session, "spatium"))      # as alice

The owner links an account once (``link_password``, ``link_refresh_token``, or from a
browser for an OIDC upstream: ``begin_link``, then ``finish_link`` with the callback's
query parameters -- the authorization-code flow with PKCE); the
refresh and access tokens are kept in the engine's repository, sealed with keys derived
from the secret keys; a session whose token holds ``upstream:<name>`` gets the access
token (``access_token``, ``auth``), refreshed once per link across every process that
shares the store.  See ``docs/broker.md``.

Needs the ``broker`` extra: ``pip install "authtoken[broker]"``.
"""

from __future__ import annotations

try:
    import cryptography  # noqa: F401 - the sealing's dependency: say which extra installs it
    import httpx  # noqa: F401
    import jwt  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        'authtoken.broker needs cryptography, httpx and PyJWT: pip install "authtoken[broker]"'
    ) from exc

from .._repository import LINK_STATES as LINK_STATES
from ._auth import BrokerAuth as BrokerAuth
from ._broker import LINK_NAME as LINK_NAME
from ._broker import Broker as Broker
from ._upstreams import OIDCUpstream as OIDCUpstream
from ._upstreams import SpatiumUpstream as SpatiumUpstream
from ._upstreams import link_token_id as link_token_id

__all__ = ["LINK_STATES", "Broker", "BrokerAuth", "OIDCUpstream", "SpatiumUpstream",
           "link_token_id"]

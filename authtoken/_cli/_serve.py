"""``authtoken serve-admin``: the admin API and the token page, served by uvicorn.

The page's sign-in is a token by default.  With ``--oidc-authority`` and
``--oidc-client-id`` people sign in with the organisation's OpenID provider
(``authtoken.admin.OIDCSignIn``): the client secret, for a confidential client, is read
from a private file (``--oidc-client-secret-file``), never from an argument; admins are
those whose ID token claim ``--oidc-admin-claim`` holds ``--oidc-admin-value``.  With
``--upstreams FILE`` (the file ``authtoken upstream`` reads) the page lists each
user's linked upstream accounts and links OIDC ones from the browser.
"""

from __future__ import annotations

import argparse
from typing import Any, Final

from .._errors import InvalidArgument
from .._tokenfile import read_token_file
from ._output import PROG, fail, note, warn

__all__ = ["add_serve_options", "cmd_serve_admin"]

_LOOPBACK: Final = ("127.0.0.1", "::1", "localhost")


def _sign_in(args: argparse.Namespace) -> Any:
    """The ``OIDCSignIn`` the options describe, or ``None``."""
    if args.oidc_client_secret_argument is not None:
        raise InvalidArgument("a client secret is never an argument (every process on "
                              "the machine can read arguments): put it in a private file "
                              "and give --oidc-client-secret-file F")
    authority, client_id = args.oidc_authority, args.oidc_client_id
    if authority is None and client_id is None:
        for option in ("oidc_client_secret_file", "oidc_admin_claim", "oidc_admin_value"):
            if getattr(args, option) is not None:
                raise InvalidArgument(f"--{option.replace('_', '-')} needs "
                                      "--oidc-authority and --oidc-client-id")
        return None
    if not authority or not client_id:
        raise InvalidArgument("single sign-on needs both --oidc-authority and "
                              "--oidc-client-id")
    if args.oidc_admin_value is not None and args.oidc_admin_claim is None:
        raise InvalidArgument("--oidc-admin-value needs --oidc-admin-claim (say 'groups')")
    from ..admin import OIDCSignIn

    secret = None if args.oidc_client_secret_file is None else read_token_file(
        args.oidc_client_secret_file, label="the OIDC client secret file")
    return OIDCSignIn(authority, client_id, client_secret=secret,
                      user_claim=args.oidc_user_claim, admin_claim=args.oidc_admin_claim,
                      admin_value=args.oidc_admin_value,
                      name=args.oidc_name or "your organisation's sign-in")


def cmd_serve_admin(args: argparse.Namespace) -> int:
    from ._commands import open_store

    try:
        import uvicorn

        from ..admin import DelegationTokenAuth, create_app
    except ImportError:
        fail("MissingExtra", "serve-admin needs the web server: "
             "pip install 'authtoken[serve]'",
             text=f"{PROG} serve-admin needs the web server: pip install 'authtoken[serve]'")
        return 1
    host = args.host.strip()
    sign_in = _sign_in(args)
    security = open_store(args)
    with security:
        security.list_auth_tokens(user="-")  # storage reachable and schema current
        broker = None
        if args.upstreams is not None:
            from ..broker import Broker
            from ._upstream_config import load_upstreams, upstreams_path

            broker = Broker(security, load_upstreams(upstreams_path(args.upstreams)))
        app = create_app(security, authenticate=DelegationTokenAuth(
            security, admin_scope=args.admin_scope or None), sign_in=sign_in, broker=broker)
        shown = f"[{host}]" if ":" in host else host
        how = (f"with {args.oidc_authority} (register the redirect URI "
               f"http://{shown}:{args.port}/ui/sso/callback there), or with a token"
               if sign_in is not None else
               f"with a token ('{PROG} authorize --user U --scope "
               f"\"{args.admin_scope} ...\"' makes an admin one)")
        note(f"{PROG}: the admin API and the token page on http://{shown}:{args.port}/ui/ "
             f"-- sign in {how}. Ctrl+C stops.")
        if host not in _LOOPBACK:
            warn(f"listening on {host}, beyond this machine, without TLS: put it behind "
                 "an HTTPS reverse proxy.")
        uvicorn.run(app, host=host, port=args.port, lifespan="off", log_level="warning",
                    access_log=False, server_header=False, proxy_headers=args.proxy_headers,
                    forwarded_allow_ips=args.forwarded_allow_ips)
    return 0


def add_serve_options(sub: argparse.ArgumentParser) -> None:
    """The single sign-on and upstream options of ``serve-admin``."""
    sub.add_argument("--oidc-authority", metavar="URL",
                     help="sign people in with this OpenID provider (its issuer URL; "
                          "https, or http on this machine)")
    sub.add_argument("--oidc-client-id", metavar="ID",
                     help="the page's client id at the provider")
    sub.add_argument("--oidc-client-secret-file", metavar="F",
                     help="for a confidential client: a private file (chmod 600) holding "
                          "its secret")
    # Only to refuse it, saying why: a secret is never an argument (ps shows it).
    sub.add_argument("--oidc-client-secret", dest="oidc_client_secret_argument", nargs="?",
                     const="", help=argparse.SUPPRESS)
    sub.add_argument("--oidc-user-claim", metavar="C", default="sub",
                     help="the ID token claim naming the user (default sub)")
    sub.add_argument("--oidc-admin-claim", metavar="C",
                     help="the ID token claim that makes an admin, such as groups")
    sub.add_argument("--oidc-admin-value", metavar="V",
                     help="the value --oidc-admin-claim must hold (such as authtoken-admins; "
                          "without it the claim must be true)")
    sub.add_argument("--oidc-name", metavar="NAME",
                     help="what the sign-in button names (default: your organisation's "
                          "sign-in)")
    sub.add_argument("--upstreams", metavar="FILE",
                     help="list users' linked upstream accounts on the page, and link OIDC "
                          "ones from the browser: the upstreams file of 'upstream link'")

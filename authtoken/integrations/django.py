"""Django REST framework: ``TokenAuthentication`` and the ``HasScopes`` permission.

``pip install "authtoken[django]"``; see docs/integrations/django.md.

Configuration is the ``AUTHTOKEN`` dict of the Django settings::

    AUTHTOKEN = {
        "DATABASE_URL": "postgresql://authtoken@db/authtoken",  # default: as open_security
        "SECRET_KEYS": ["newest", "older"],    # or "newest,older"; default: as open_security
        "SCRIPT_KEY": 7, "SCRIPT_PATH": "/srv/api",  # the script this service logs in as
        "SCRIPT_DIGEST": "0d5f…",              # and the SHA-256 of its code (sha256: tokens)
        "CREATE_USERS": False,                 # make a Django user a token names, if missing
    }

One ``Security`` per process is opened from it on first use (:func:`get_security`) and
closed at exit, or when a test changes the setting (``override_settings``).

``TokenAuthentication`` reads ``Authorization: Bearer atk_…``; a request with no header,
or with one of another scheme (``Basic``, as DRF's own classes step aside for a keyword
not theirs), is left to the next authentication class (DRF answers 401 with
``WWW-Authenticate: Bearer`` when none succeeds and the view needs a user).  A malformed
header, a token under another scheme, a token in the query string or a token the engine
refuses is a 401 whose ``WWW-Authenticate`` carries RFC 6750's ``error``; storage
unreachable is a 503 with ``Retry-After: 5``.  On success ``request.user`` is the Django
user whose username is the principal's user (``str(principal.user)``) and
``request.auth`` the ``Principal``.  A user that does not exist is refused (401) unless
``CREATE_USERS`` is true; an inactive user is refused.

``HasScopes`` requires every scope of the view's ``required_scopes`` (a list, or a
space-separated string) in the principal's scopes, exactly: otherwise 403 with
``WWW-Authenticate: Bearer error="insufficient_scope", scope="..."``.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Mapping
from typing import Any, Final

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import IntegrityError, transaction
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission

from .._errors import InvalidArgument, RepositoryError
from .._open import open_security
from .._redact import redact
from .._scopes import Script
from .._security import Security
from .._token import Principal
from ._bearer import (
    RETRY_AFTER,
    BearerRefused,
    bearer_credential,
    challenge,
    login,
    missing_scopes,
)

__all__ = [
    "HasScopes",
    "InsufficientScope",
    "TokenAuthentication",
    "Unavailable",
    "close_security",
    "get_security",
]

SETTING: Final = "AUTHTOKEN"
KNOWN: Final = frozenset(
    {"DATABASE_URL", "SECRET_KEYS", "SCRIPT_KEY", "SCRIPT_PATH", "SCRIPT_DIGEST",
     "CREATE_USERS"})
# Where authenticate leaves the refusal's challenge for authenticate_header.
_CHALLENGE: Final = "_authtoken_challenge"

_lock = threading.Lock()
_opened: tuple[Security, Script | None, bool] | None = None


def _config() -> Mapping[str, Any]:
    config = getattr(settings, SETTING, {})
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured(f"settings.{SETTING} must be a dict")
    unknown = sorted(str(k) for k in config if k not in KNOWN)
    if unknown:
        raise ImproperlyConfigured(
            f"settings.{SETTING} has unknown keys {unknown}; known: {sorted(KNOWN)}")
    return config


def _secret_keys(value: object) -> list[str] | None:
    if value is None:
        return None
    keys = value.split(",") if isinstance(value, str) else value
    if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
        raise ImproperlyConfigured(
            f"{SETTING}['SECRET_KEYS'] must be a list of strings or a comma-separated string")
    keys = [k.strip() for k in keys if k.strip()]
    if not keys:
        raise ImproperlyConfigured(f"{SETTING}['SECRET_KEYS'] holds no key")
    return keys


def _script(config: Mapping[str, Any]) -> Script | None:
    key, path = config.get("SCRIPT_KEY"), config.get("SCRIPT_PATH")
    digest = config.get("SCRIPT_DIGEST")
    if key is None and path is None and digest is None:
        return None
    if key is not None and (isinstance(key, bool) or not isinstance(key, int)):
        raise ImproperlyConfigured(f"{SETTING}['SCRIPT_KEY'] must be an int")
    if path is not None and not isinstance(path, str):
        raise ImproperlyConfigured(f"{SETTING}['SCRIPT_PATH'] must be a str")
    if digest is not None and not isinstance(digest, str):
        raise ImproperlyConfigured(f"{SETTING}['SCRIPT_DIGEST'] must be a str")
    try:
        return Script(key=key, path=path, digest=digest)
    except InvalidArgument as exc:  # says what is wrong with the path or the digest
        raise ImproperlyConfigured(
            f"settings.{SETTING}'s SCRIPT_PATH or SCRIPT_DIGEST is malformed: {exc}",
        ) from None


def _open() -> tuple[Security, Script | None, bool]:
    global _opened
    with _lock:
        if _opened is None:
            config = _config()
            create = config.get("CREATE_USERS", False)
            if not isinstance(create, bool):
                raise ImproperlyConfigured(f"{SETTING}['CREATE_USERS'] must be a bool")
            url = config.get("DATABASE_URL")
            if url is not None and not isinstance(url, str):
                raise ImproperlyConfigured(f"{SETTING}['DATABASE_URL'] must be a str")
            script, keys = _script(config), _secret_keys(config.get("SECRET_KEYS"))
            _opened = (open_security(url, secret_keys=keys), script, create)
        return _opened


def get_security() -> Security:
    """The process's ``Security``, opened from ``settings.AUTHTOKEN`` on first call.

    Raises ``ImproperlyConfigured`` for a malformed setting, or what ``open_security``
    raises (``RepositoryError``, ``InvalidArgument``); nothing is kept open then, so the
    next call tries again.
    """
    return _open()[0]


def close_security() -> None:
    """Flush and close the process's ``Security``, if one is open; the next call of
    ``get_security`` opens a new one.  Called at exit and when the setting changes."""
    global _opened
    with _lock:
        opened, _opened = _opened, None
    if opened is not None:
        opened[0].close()


def _setting_changed(*, setting: str, **_: Any) -> None:
    if setting == SETTING:
        close_security()


setting_changed.connect(_setting_changed, dispatch_uid="authtoken.integrations.django")
atexit.register(close_security)


class Unavailable(exceptions.APIException):  # type: ignore[misc]  # DRF ships no types
    """The token store cannot be reached: 503 with ``Retry-After`` (DRF sends ``wait``),
    try again later."""

    status_code = 503
    wait = RETRY_AFTER
    default_detail = "the token store cannot be reached; try again later"
    default_code = "unavailable"


class InsufficientScope(exceptions.PermissionDenied):  # type: ignore[misc]  # DRF ships no types
    """403: the token lacks a scope the view requires; ``auth_header`` names them."""

    default_code = "insufficient_scope"

    def __init__(self, lacking: list[str]) -> None:
        super().__init__(redact(
            "the token lacks the scope(s) " + ", ".join(ascii(s) for s in lacking)))
        self.auth_header = challenge("insufficient_scope", "the token lacks a required scope",
                                     scopes=lacking)


class TokenAuthentication(BaseAuthentication):  # type: ignore[misc]  # DRF ships no types
    """DRF authentication by ``Authorization: Bearer atk_…``: ``(user, Principal)``.

    ``authenticate`` returns ``None`` with no ``Authorization`` header or one of another
    scheme, so the next authentication class is tried; raises
    ``AuthenticationFailed`` (401) for a refused credential or a user it may not map,
    ``Unavailable`` (503, ``Retry-After: 5``) when storage cannot be reached.  Override
    ``get_user`` to map principals to users another way.
    """

    def authenticate(self, request: Any) -> tuple[Any, Principal] | None:
        header = request.META.get("HTTP_AUTHORIZATION")
        try:
            credential = bearer_credential([] if header is None else [header],
                                           request.META.get("QUERY_STRING", ""))
            security, script, _ = _open()
            principal = login(security, credential, script)
        except BearerRefused as refusal:
            if refusal.missing:
                return None
            raise self._refused(request, refusal) from None
        except RepositoryError:  # opening the store failed: it may be back soon
            raise Unavailable() from None
        return self.get_user(request, principal), principal

    def get_user(self, request: Any, principal: Principal) -> Any:
        """The active Django user whose username is ``str(principal.user)``; with
        ``CREATE_USERS`` one is made (with no usable password) when missing."""
        model = get_user_model()
        username = str(principal.user)
        manager = model.objects
        field = getattr(getattr(model, model.USERNAME_FIELD, None), "field", None)
        longest = getattr(field, "max_length", None)
        fits = longest is None or len(username) <= longest  # else no such account can be
        try:
            user = manager.get_by_natural_key(username) if fits else None
        except model.DoesNotExist:
            user = None
        if user is None:
            if not fits or not _open()[2]:
                raise self._refused(request, BearerRefused(
                    "the token's user has no account here", error="invalid_token"))
            try:
                with transaction.atomic():  # a savepoint: a clash spoils no outer transaction
                    user = manager.create_user(**{model.USERNAME_FIELD: username})
            except IntegrityError:  # made by a concurrent request meanwhile
                user = manager.get_by_natural_key(username)
        if not getattr(user, "is_active", True):
            raise self._refused(request, BearerRefused(
                "the token's user is not active", error="invalid_token"))
        return user

    def authenticate_header(self, request: Any) -> str:
        return str(getattr(request, _CHALLENGE, None) or challenge())

    @staticmethod
    def _refused(request: Any, refusal: BearerRefused) -> exceptions.APIException:
        if refusal.status == 503:
            return Unavailable()
        setattr(request, _CHALLENGE, refusal.challenge)
        return exceptions.AuthenticationFailed(refusal.description)


class HasScopes(BasePermission):  # type: ignore[misc]  # DRF ships no types
    """Allows a request whose ``Principal`` holds every scope of the view's
    ``required_scopes`` (a list or a space-separated string; none: any token).

    A request not authenticated by a token is refused (401 when nobody authenticated
    it, else 403); one missing a scope raises ``InsufficientScope`` (403).
    """

    def has_permission(self, request: Any, view: Any) -> bool:
        principal = request.auth
        if not isinstance(principal, Principal):
            return False
        required = getattr(view, "required_scopes", ())
        if isinstance(required, str):
            required = required.split()
        lacking = missing_scopes(principal, required)
        if lacking:
            raise InsufficientScope(lacking)
        return True

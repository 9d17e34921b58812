"""A Django REST framework API that takes delegation tokens: settings, views, answers.

Needs ``pip install "authtoken[django]"`` (Django and Django REST framework).  Run it
with ``python docs/examples/django_drf.py``: it configures a one-file Django project
(its own database in memory, the tokens in a SQLite file in a temporary folder with a
throwaway key), calls the API through DRF's test client and prints what each call got.
It never prints a token string.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from typing import Any

import django
from django.conf import settings


def configure(folder: Path) -> None:
    settings.configure(
        SECRET_KEY=secrets.token_urlsafe(32),
        ALLOWED_HOSTS=["testserver"],
        ROOT_URLCONF=__name__,
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth",
                        "rest_framework"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        AUTHTOKEN={
            "DATABASE_URL": f"sqlite:///{folder / 'tokens.db'}",
            "SECRET_KEYS": [secrets.token_urlsafe(32)],   # or "newest,older"
        },
        REST_FRAMEWORK={
            "DEFAULT_AUTHENTICATION_CLASSES": [
                "authtoken.integrations.django.TokenAuthentication",
            ],
            "DEFAULT_PERMISSION_CLASSES": [
                "authtoken.integrations.django.HasScopes",
            ],
        },
        # Django logs each 401 and 403 ("Unauthorized: /reports"); not in this example.
        LOGGING={"version": 1, "loggers": {"django.request": {"level": "ERROR"}}},
    )
    django.setup()


def views() -> list[Any]:
    """The API: its views and URLs (a project keeps them in views.py and urls.py)."""
    from django.urls import path
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.views import APIView

    class WhoAmI(APIView):
        def get(self, request: Request) -> Response:
            # request.user: the Django user; request.auth: the Principal.
            return Response({"user": request.user.username,
                             "scopes": list(request.auth.scopes)})

    class Reports(APIView):
        required_scopes = ("reports:read",)

        def get(self, request: Request) -> Response:
            return Response({"reports": ["sales", "stock"], "for": request.user.username})

    return [path("whoami", WhoAmI.as_view()), path("reports", Reports.as_view())]


urlpatterns: list[Any] = []


def show(what: str, answer: Any) -> None:
    challenge = answer.headers.get("WWW-Authenticate")
    said = f", WWW-Authenticate: {challenge}" if challenge else ""
    print(f"{what}: {answer.status_code} {answer.json()}{said}")


def calls() -> None:
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from rest_framework.test import APIClient

    from authtoken import AuthToken
    from authtoken.integrations.django import close_security, get_security

    call_command("migrate", run_syncdb=True, verbosity=0)
    User.objects.create_user("alice")
    User.objects.create_user("bob")
    security = get_security()  # the one Security of this process, from settings.AUTHTOKEN
    alice = security.authorize_token(AuthToken("reports:read"), user="alice")
    bob = security.authorize_token(AuthToken("files:list"), user="bob")
    zoe = security.authorize_token(AuthToken("reports:read"), user="zoe")

    api = APIClient()
    show("whoami as alice", api.get("/whoami", HTTP_AUTHORIZATION=f"Bearer {alice}"))
    show("reports as alice", api.get("/reports", HTTP_AUTHORIZATION=f"Bearer {alice}"))
    show("reports with no header", api.get("/reports"))
    show("reports as bob", api.get("/reports", HTTP_AUTHORIZATION=f"Bearer {bob}"))
    show("a token of a user with no account",
         api.get("/whoami", HTTP_AUTHORIZATION=f"Bearer {zoe}"))
    security.revoke_auth_token(alice)
    show("reports after revocation", api.get("/reports", HTTP_AUTHORIZATION=f"Bearer {alice}"))
    close_security()  # also done at exit


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        configure(Path(folder))
        urlpatterns.extend(views())
        calls()
    print("done")


if __name__ == "__main__":
    main()

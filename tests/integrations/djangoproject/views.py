"""API views of the test project: who am I, a scoped view, an open one, and one for
any authenticated user, by token or otherwise."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from authtoken import Principal


class Me(APIView):
    """Any valid token: the Django user and the principal."""

    def get(self, request: Request) -> Response:
        principal: Any = request.auth
        return Response({"username": request.user.username, "key": principal.token_key,
                         "scopes": list(principal.scopes)})


class Reports(APIView):
    """Needs the scope reports:read."""

    required_scopes = ("reports:read",)

    def get(self, request: Request) -> Response:
        return Response({"reader": request.user.username})


class Health(APIView):
    """Open to anyone."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    def get(self, request: Request) -> Response:
        return Response({"status": "ok"})


class Who(APIView):
    """Any authenticated user, whichever class authenticated it."""

    permission_classes = (IsAuthenticated,)

    def get(self, request: Request) -> Response:
        return Response({"username": request.user.username,
                         "by_token": isinstance(request.auth, Principal)})

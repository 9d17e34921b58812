"""The test project's URLs."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("me", views.Me.as_view()),
    path("reports", views.Reports.as_view()),
    path("health", views.Health.as_view()),
    path("who", views.Who.as_view()),
]

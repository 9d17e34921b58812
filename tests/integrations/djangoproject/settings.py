"""Settings of the test project, as a service using authtoken would write them.

``AUTHTOKEN_TEST_DJANGO_DIR`` names the folder for the Django database and the token
store; the tests set it before ``django.setup()``.
"""

from __future__ import annotations

import os
from pathlib import Path

FOLDER = Path(os.environ["AUTHTOKEN_TEST_DJANGO_DIR"])

SECRET_KEY = "django-test-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
ROOT_URLCONF = "djangoproject.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rest_framework",
]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(FOLDER / "django.db")},
}

AUTHTOKEN = {
    "DATABASE_URL": f"sqlite:///{FOLDER / 'tokens.db'}",
    "SECRET_KEYS": "django-test-key-new, django-test-key-old",
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "authtoken.integrations.django.TokenAuthentication",
        # Tried when a request holds no bearer credential (here: "Authorization: Basic").
        "rest_framework.authentication.BasicAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "authtoken.integrations.django.HasScopes",
    ],
}

"""The OIDC provider the tests run against: ``authtoken.testing.OIDCProvider``.

It lives in the package (``authtoken/testing/_oidc.py``) so that users can test their
own code against it; this module keeps the names ``tests/issuers/test_oidc.py`` imports.
"""

from __future__ import annotations

from authtoken.testing._oidc import (
    AUDIENCE,
    PUBLIC_CLIENT,
    REALM,
    SERVICE_CLIENT,
    OIDCProvider,
    rsa_key,
)

Provider = OIDCProvider

__all__ = ["AUDIENCE", "PUBLIC_CLIENT", "REALM", "SERVICE_CLIENT", "OIDCProvider", "Provider",
           "rsa_key"]

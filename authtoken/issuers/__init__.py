"""Adapters that keep upstream credentials fresh: ``authtoken.issuers.spatium`` and
``authtoken.issuers.oidc``.

Both stand on one sans-IO refresh engine (``_core``) with thin sync and async shells
(``_shell``).  They need the ``issuers`` extra: ``pip install "authtoken[issuers]"``.
"""

from __future__ import annotations

__all__: list[str] = []

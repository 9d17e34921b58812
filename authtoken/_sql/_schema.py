"""The tables of the SQL repository.

The schema is declared with SQLModel on a registry of its own (so an application's
``SQLModel.metadata.create_all`` never sees it); the migrations of
``authtoken/_migrations`` create it, and a test checks that the two agree.  Table classes
never leave the ``_sql`` package: rows become ``TokenRecord``, ``LoginRow`` and
``AuditEvent`` values at its edge (``_rows``, which says how each value is stored).
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

__all__ = [
    "AUDIT", "BATCHES", "LINKS", "LOGIN_SELECT", "METADATA", "STAGED", "TOKENS", "AuditRow",
    "StagedRow", "TokenRow", "UpstreamLinkRow", "UsageBatchRow",
]


class _Base(SQLModel, registry=registry()):
    pass


class TokenRow(_Base, table=True):
    """One token.  ``secret_hash`` is the SHA-256 of the secret, never the secret."""

    __tablename__ = "authtoken_token"
    __table_args__ = (
        sa.PrimaryKeyConstraint("id", name="pk_authtoken_token"),
        sa.UniqueConstraint("key", name="uq_authtoken_token_key"),
    )

    id: int | None = Field(default=None, nullable=False)
    key: str = Field(sa_type=sa.String(32), nullable=False)
    user_ref: str = Field(sa_type=sa.String(300), index=True, nullable=False)
    scope: str = Field(sa_type=sa.Text, nullable=False)
    data: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    description: bytes = Field(sa_type=sa.LargeBinary, nullable=False)
    expires: int | None = Field(default=None, sa_type=sa.BigInteger)
    created_at: int = Field(sa_type=sa.BigInteger, nullable=False)
    updated_at: int = Field(sa_type=sa.BigInteger, nullable=False)
    revoked_at: int | None = Field(default=None, sa_type=sa.BigInteger)
    last_used_at: int | None = Field(default=None, sa_type=sa.BigInteger)
    use_count: int = Field(default=0, sa_type=sa.BigInteger, nullable=False)
    parent_key: str | None = Field(default=None, sa_type=sa.String(32), index=True)
    secret_hash: bytes = Field(sa_type=sa.LargeBinary(32), nullable=False)
    version: int = Field(default=1, nullable=False)
    max_uses: int | None = Field(default=None, sa_type=sa.BigInteger)
    max_lifetime: int | None = Field(default=None, sa_type=sa.BigInteger)  # µs
    lifetime: int | None = Field(default=None, sa_type=sa.BigInteger)  # µs
    run_id: str | None = Field(default=None, sa_type=sa.Text)
    ancestors: str | None = Field(default=None, sa_type=sa.Text)  # keys, space-separated


class AuditRow(_Base, table=True):
    """One audit event; never a token string or secret.

    Indexed so that the newest ``limit`` events of a user, of a token or of everyone
    are read in ``limit`` steps: each index ends with ``(at, id)``, the order of a read.
    """

    __tablename__ = "authtoken_audit"
    __table_args__ = (
        sa.PrimaryKeyConstraint("id", name="pk_authtoken_audit"),
        sa.Index("ix_authtoken_audit_at_id", "at", "id"),
        sa.Index("ix_authtoken_audit_user_at", "user_ref", "at", "id"),
        sa.Index("ix_authtoken_audit_token_at", "token_key", "at", "id"),
    )

    id: int | None = Field(
        default=None, nullable=False, sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    )
    at: int = Field(sa_type=sa.BigInteger, nullable=False)
    action: str = Field(sa_type=sa.String(16), nullable=False)
    outcome: str = Field(sa_type=sa.String(8), nullable=False)
    actor: str | None = Field(default=None, sa_type=sa.String(300))
    token_key: str | None = Field(default=None, sa_type=sa.String(32))
    user_ref: str | None = Field(default=None, sa_type=sa.String(300))
    script_key: int | None = Field(default=None, sa_type=sa.BigInteger)
    script_path: str | None = Field(default=None, sa_type=sa.Text)
    reason: str | None = Field(default=None, sa_type=sa.String(64))
    count: int = Field(default=1, sa_type=sa.BigInteger, nullable=False)


class StagedRow(_Base, table=True):
    """A usage count or an audit event written by a batch and not yet folded in.

    The columns of an audit row (``action`` and ``outcome`` ``NULL`` for a row that is
    usage only) plus ``uses``: how many logins of ``token_key`` it adds to the token's
    ``use_count``, the latest at ``at``.  Appended, read in ``id`` order, never indexed
    otherwise: see ``_staging``.
    """

    __tablename__ = "authtoken_staged"
    # AUTOINCREMENT on SQLite: no id is handed out twice, even once the table empties
    # (a fold deletes by id what it read before: see ``_fold``).
    __table_args__ = (sa.PrimaryKeyConstraint("id", name="pk_authtoken_staged"),
                      {"sqlite_autoincrement": True})

    id: int | None = Field(
        default=None, nullable=False, sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    )
    at: int = Field(sa_type=sa.BigInteger, nullable=False)
    action: str | None = Field(default=None, sa_type=sa.String(16))
    outcome: str | None = Field(default=None, sa_type=sa.String(8))
    actor: str | None = Field(default=None, sa_type=sa.String(300))
    token_key: str | None = Field(default=None, sa_type=sa.String(32))
    user_ref: str | None = Field(default=None, sa_type=sa.String(300))
    script_key: int | None = Field(default=None, sa_type=sa.BigInteger)
    script_path: str | None = Field(default=None, sa_type=sa.Text)
    reason: str | None = Field(default=None, sa_type=sa.String(64))
    count: int = Field(default=1, sa_type=sa.BigInteger, nullable=False)
    uses: int = Field(default=0, sa_type=sa.BigInteger, nullable=False)


class UsageBatchRow(_Base, table=True):
    """The highest usage batch number a writer has written (see ``BatchId``)."""

    __tablename__ = "authtoken_usage_batch"
    __table_args__ = (sa.PrimaryKeyConstraint("writer", name="pk_authtoken_usage_batch"),)

    writer: str = Field(sa_type=sa.String(32), nullable=False)
    number: int = Field(sa_type=sa.BigInteger, nullable=False)
    written_at: int = Field(sa_type=sa.BigInteger, nullable=False)


class UpstreamLinkRow(_Base, table=True):
    """A user's account at an upstream issuer (``authtoken.broker``); its tokens are sealed
    (AES-GCM blobs, ``authtoken._sealing``), never stored in clear.  Times in µs."""

    __tablename__ = "authtoken_upstream_link"
    __table_args__ = (
        sa.PrimaryKeyConstraint("user_ref", "name", name="pk_authtoken_upstream_link"),
    )

    user_ref: str = Field(sa_type=sa.String(300), nullable=False)
    name: str = Field(sa_type=sa.String(64), nullable=False)
    state: str = Field(sa_type=sa.String(16), nullable=False)
    refresh_token: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    access_token: bytes | None = Field(default=None, sa_type=sa.LargeBinary)
    access_expires: int | None = Field(default=None, sa_type=sa.BigInteger)
    refresh_at: int | None = Field(default=None, sa_type=sa.BigInteger)
    refresh_expires: int | None = Field(default=None, sa_type=sa.BigInteger)
    lease_holder: str | None = Field(default=None, sa_type=sa.String(64))
    lease_expires: int | None = Field(default=None, sa_type=sa.BigInteger)
    version: int = Field(default=1, nullable=False)
    updated_at: int = Field(sa_type=sa.BigInteger, nullable=False)


METADATA = _Base.metadata
TOKENS: sa.Table = TokenRow.__table__  # type: ignore[attr-defined]
AUDIT: sa.Table = AuditRow.__table__  # type: ignore[attr-defined]
BATCHES: sa.Table = UsageBatchRow.__table__  # type: ignore[attr-defined]
STAGED: sa.Table = StagedRow.__table__  # type: ignore[attr-defined]
LINKS: sa.Table = UpstreamLinkRow.__table__  # type: ignore[attr-defined]
# The login read through SQLAlchemy, for a dialect without a login path of its own.
LOGIN_SELECT: Final = sa.select(
    TOKENS.c.secret_hash, TOKENS.c.user_ref, TOKENS.c.scope, TOKENS.c.data,
    TOKENS.c.expires, TOKENS.c.revoked_at, TOKENS.c.max_uses, TOKENS.c.parent_key,
    TOKENS.c.run_id, TOKENS.c.ancestors,
).where(TOKENS.c.key == sa.bindparam("key"))

"""Alembic revisions of authtoken's own tables (see ``authtoken._migrate``)."""

from typing import Final

__all__ = ["REVISIONS"]

#: Every revision this code knows, oldest first: the last is the newest schema.
REVISIONS: Final = ("0001", "0002", "0003", "0004", "0005", "0006", "0007")

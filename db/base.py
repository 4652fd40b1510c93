"""The tables' declarative base, and what every table module uses: the time now, in UTC, and an
enum's CHECK constraint."""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import CheckConstraint
from sqlalchemy.orm import DeclarativeBase


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


def enum_check(table: str, column: str, enum_cls) -> CheckConstraint:
    values = ", ".join(f"'{e.value}'" for e in enum_cls)
    return CheckConstraint(f"{column} IN ({values})", name=f"ck_{table}_{column}")

"""Alembic: upgrade from empty, the schema matches the models, downgrade to nothing."""
from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from db.migrate import downgrade, upgrade
from db.models import Base
from tests.conftest import temp_database


def test_upgrade_from_empty_matches_models_and_downgrades():
    with temp_database("wardrobe_mig") as url:
        upgrade(url)
        eng = create_engine(url)
        with eng.connect() as c:
            assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
            tables = set(inspect(c).get_table_names())
        assert {"users", "api_tokens", "jobs", "photos", "items", "alembic_version"} <= tables
        downgrade(url, "base")
        with eng.connect() as c:
            assert set(inspect(c).get_table_names()) == {"alembic_version"}
        upgrade(url)  # and back up again
        eng.dispose()


def test_sqlite_embedded_default_migrates(tmp_path):
    url = f"sqlite:///{tmp_path / 'w.db'}"
    upgrade(url)
    eng = create_engine(url)
    with eng.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), Base.metadata) == []
    downgrade(url, "base")
    eng.dispose()

"""Database errors never carry the bound values (they may be personal data) into messages."""

import pytest
from sqlalchemy import Column, MetaData, String, Table, insert
from sqlalchemy.exc import IntegrityError

from services.common.db import make_engine

SECRET = "ZZZ0016-Aroha-Te-Whare"


def _fails_with_a_bound_value(url: str) -> str:
    engine = make_engine(url)
    table = Table("t_hidden", MetaData(), Column("k", String, primary_key=True))
    try:
        table.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(table), {"k": SECRET})
        with pytest.raises(IntegrityError) as caught, engine.begin() as conn:
            conn.execute(insert(table), {"k": SECRET})  # duplicate key
        return f"{caught.value}\n{caught.value.orig}"
    finally:
        engine.dispose()


def test_sqlite_errors_hide_bound_parameters(tmp_path):
    message = _fails_with_a_bound_value(f"sqlite:///{tmp_path / 'x.db'}")
    assert "hidden due to hide_parameters" in message
    assert SECRET not in message


@pytest.mark.postgres
def test_postgresql_errors_hide_bound_parameters(pg_database):
    message = _fails_with_a_bound_value(pg_database(None))
    assert "hidden due to hide_parameters" in message
    assert "duplicate key" in message
    assert SECRET not in message  # nor the server's DETAIL line, which repeats the key

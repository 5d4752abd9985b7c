"""Shared fixtures: small games with known truth."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import itertools

import pytest

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_url():
    """One real PostgreSQL server for the whole run (see tests/postgres.py)."""
    from postgres import postgres_server

    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def job_store_url(request, tmp_path):
    """A fresh, empty job store: a SQLite file, or a new database on the suite's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    return _fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def postgres_store_url(postgres_url):
    """A new, empty database on the suite's PostgreSQL server."""
    return _fresh_database(postgres_url)


def _fresh_database(server: str) -> str:
    import psycopg

    name = f"jobs_{next(_databases)}"
    host = server.split("@", 1)[1].split("/", 1)[0]
    with psycopg.connect(f"postgresql://multishap@{host}/multishap", autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"postgresql+psycopg://multishap@{host}/{name}"

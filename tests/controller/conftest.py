"""Fixtures of the controller tests: a real PostgreSQL server (tests/support/postgres.py)."""

from tests.support.postgres import postgres_server, postgres_url

__all__ = ["postgres_server", "postgres_url"]

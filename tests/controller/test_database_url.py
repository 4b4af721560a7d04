"""``--db`` / ``database.path``: a URL scheme no store serves is refused at start, by name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from otel_adaprof.controller.store_factory import describe_database, open_store


def _controller(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_adaprof.cli", "controller", "--port", "0", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unsupported_db_url_is_refused_naming_the_option(tmp_path: Path):
    result = _controller(tmp_path, "--db", "mysql://adaprof@127.0.0.1:1/adaprof")
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())  # the console wraps long lines
    assert "--db: unsupported database URL scheme 'mysql'" in message
    assert "Traceback" not in result.stderr and "sqlite3" not in result.stderr
    assert "listening" not in result.stderr + result.stdout
    assert list(tmp_path.iterdir()) == []  # no file named after the URL was created


def test_unsupported_scheme_in_the_config_file_names_the_field(tmp_path: Path):
    config = tmp_path / "controller.yaml"
    config.write_text('database:\n  path: "mysql://db.internal/adaprof"\n')
    result = _controller(tmp_path, "--config", str(config))
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "database.path: unsupported database URL scheme 'mysql'" in message
    assert "Traceback" not in result.stderr


def test_sqlite_urls_and_paths_open_the_same_file(tmp_path: Path):
    target = tmp_path / "a.db"
    store = open_store(f"sqlite:///{target}")
    sid = store.create_session("shop", {"service": "shop"}, now=1.0, ends_at=2.0)
    store.close()
    again = open_store(str(target))
    assert again.get_session(sid) is not None
    again.close()
    assert describe_database(f"sqlite:///{target}") == str(target)
    assert describe_database("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"

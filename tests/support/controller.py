"""Run the REAL controller as a subprocess on 127.0.0.1 for tests.

Usage::

    from tests.support.controller import ControllerProcess

    with ControllerProcess(tmp_path / "adaprof.db", token="secret-token") as ctl:
        ctl.request("POST", "/v1/sessions", {"service": "shop"})
        ctl.kill()      # SIGKILL, as a crash would
        ctl.start()     # same database, new port

Or the ``controller`` fixture (tests/conftest.py), which yields a started one.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 20.0
_LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")


class ControllerProcess:
    """One controller subprocess; ``url`` is its base URL once started."""

    def __init__(
        self, db_path: Path, *args: str, token: str | None = None, db_url: str | None = None
    ) -> None:
        self.db_path = Path(db_path)  # the SQLite file (with db_url: names the log only)
        self.db_url = db_url  # a postgresql:// URL instead of the file
        self.args = list(args)
        self.token = token
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log_path = self.db_path.with_suffix(".log")

    def start(self) -> ControllerProcess:
        """Start on a free port and wait until ``/readyz`` answers."""
        cmd = [
            sys.executable,
            "-m",
            "otel_adaprof.cli",
            "controller",
            "--port",
            "0",
            "--db",
            self.db_url or str(self.db_path),
            *self.args,
        ]
        if self.token:
            cmd += ["--token", self.token]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"controller exited with {self.proc.returncode}:\n{self.log()}")
            match = _LISTENING.findall(self.log())
            if match:
                self.url = f"http://127.0.0.1:{match[-1]}"
                try:
                    self.request("GET", "/readyz")
                    return self
                except (OSError, urllib.error.URLError):
                    pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"controller not ready in {START_TIMEOUT_S} s:\n{self.log()}")

    def log(self) -> str:
        """Everything the controller printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def raw(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        *,
        headers: dict[str, str] | None = None,
        token: str | None = "default",
        timeout: float = 10.0,
    ) -> tuple[int, bytes]:
        """(status, body) of one request; never raises on HTTP errors."""
        req = urllib.request.Request(self.url + path, data=body, method=method)
        use = self.token if token == "default" else token
        if use:
            req.add_header("Authorization", f"Bearer {use}")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def request(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """JSON request; raises ``AssertionError`` with the body on a non-2xx answer."""
        data = None if body is None else json.dumps(body).encode()
        status, raw = self.raw(
            method, path, data, headers={"Content-Type": "application/json"}, **kw
        )
        assert 200 <= status < 300, f"{method} {path} -> {status}: {raw[:500]!r}"
        return json.loads(raw) if raw else None

    def stop(self) -> int:
        """SIGTERM and wait (clean shutdown); returns the exit code."""
        code = 0
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
        self._close_log()
        return code

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        log = getattr(self, "_log", None)
        if log is not None and not log.closed:
            log.close()

    def __enter__(self) -> ControllerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""A small blocking HTTP client of the controller API (used by the CLI and the demo).

>>> client = ControllerClient("http://127.0.0.1:1", timeout=0.2)
>>> try:
...     client.request("GET", "/healthz")
... except ControllerClientError as exc:
...     print("cannot reach" in str(exc))
True
"""

from __future__ import annotations

import contextlib
import json
import urllib.error
import urllib.request
from typing import Any


class ControllerClientError(RuntimeError):
    """The controller could not be reached or answered an error (message included)."""


class ControllerClient:
    """JSON requests against ``base_url`` with an optional bearer token."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout

    def raw(self, method: str, path: str, body: Any = None) -> bytes:
        """The answer's bytes; :class:`ControllerClientError` on any failure."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                detail = json.loads(detail).get("message", detail)
            raise ControllerClientError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ControllerClientError(
                f"cannot reach the controller at {self.base_url}: {reason}"
            ) from None

    def request(self, method: str, path: str, body: Any = None) -> Any:
        """The answer parsed as JSON."""
        return json.loads(self.raw(method, path, body))

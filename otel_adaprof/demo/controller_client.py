"""The session calls the demo and the benchmark make on the controller (bounded timeouts).

Usage::

    >>> from otel_adaprof.demo.controller_client import ControllerClient
    >>> api = ControllerClient("http://127.0.0.1:8080")            # doctest: +SKIP
    >>> session = api.open_session({"service": "shop", "duration_s": 60})  # doctest: +SKIP
    >>> api.timeline(session_id_of(session))                        # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from typing import Any

from otel_adaprof.controller.client import ControllerClient as HTTPClient
from otel_adaprof.controller.client import ControllerClientError

#: Seconds any single call may take.
TIMEOUT_S = 10.0
#: Tries of a ``GET`` before its error is raised.
GET_ATTEMPTS = 3


class ControllerError(RuntimeError):
    """The controller was unreachable or answered an error status (message included)."""


def session_id_of(session: dict[str, Any]) -> str:
    """The id of a session object as the controller returns it."""
    for key in ("id", "session_id"):
        if isinstance(session.get(key), str):
            return str(session[key])
    inner = session.get("session")
    if isinstance(inner, dict):
        return session_id_of(inner)
    raise ControllerError(f"no session id in the controller's answer: {str(session)[:200]}")


class ControllerClient:
    """Calls to one controller; ``token`` goes in ``Authorization: Bearer``."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        # The controller package's own client does the HTTP; this adds the session calls.
        self._http = HTTPClient(self.base_url, token=token, timeout=TIMEOUT_S)

    def _call(self, method: str, path: str, body: Any = None) -> bytes:
        # Reads are retried: on a loaded machine one may time out while the next works.
        attempts = GET_ATTEMPTS if method == "GET" else 1
        for attempt in range(attempts):
            try:
                return self._http.raw(method, path, body)
            except ControllerClientError as exc:
                if attempt + 1 == attempts:
                    raise ControllerError(str(exc)) from None
                time.sleep(0.5)
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: Any = None) -> Any:
        """Call and decode a JSON answer."""
        return json.loads(self._call(method, path, body) or b"null")

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until ``/healthz`` answers 200 (raises ``TimeoutError``)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._http.raw("GET", "/healthz")
                return
            except (OSError, ControllerClientError):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"controller at {self.base_url} not ready") from None
                time.sleep(0.2)

    def open_session(self, spec: dict[str, Any]) -> dict[str, Any]:
        """``POST /v1/sessions``."""
        answer = self.json("POST", "/v1/sessions", spec)
        if not isinstance(answer, dict):
            raise ControllerError(f"unexpected answer to POST /v1/sessions: {answer!r}")
        return answer

    def session(self, session_id: str) -> dict[str, Any]:
        """``GET /v1/sessions/{id}``."""
        answer = self.json("GET", f"/v1/sessions/{session_id}")
        return answer if isinstance(answer, dict) else {}

    def stop_session(self, session_id: str) -> Any:
        """``POST /v1/sessions/{id}/stop``."""
        return self.json("POST", f"/v1/sessions/{session_id}/stop", {})

    def timeline(self, session_id: str) -> Any:
        """``GET /v1/sessions/{id}/timeline`` as decoded JSON."""
        return self.json("GET", f"/v1/sessions/{session_id}/timeline")

    def profile(self, session_id: str, fmt: str = "collapsed") -> bytes:
        """``GET /v1/sessions/{id}/profile?format=…`` raw bytes."""
        return self._call("GET", f"/v1/sessions/{session_id}/profile?format={fmt}")

    def agents(self) -> Any:
        """``GET /v1/agents``."""
        return self.json("GET", "/v1/agents")

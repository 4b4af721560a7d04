"""A report credited by another replica than the one that decided is rewarded under the
session's goal and budget (the deciding replica's context is not in its memory)."""

from __future__ import annotations

import json

import pytest

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.polling import ControllerCore
from otel_adaprof.controller.store_postgres import PostgresStore
from otel_adaprof.protocol import decode_poll_request
from otel_adaprof.session_spec import SessionSpec
from tests.controller.polls import poll_body


def _poll(core: ControllerCore, name: str, version: int) -> int:
    request = decode_poll_request(json.dumps(poll_body(name, version, cpu_s=0.05)).encode())
    return core.poll(request).config_version


def test_the_other_replica_credits_under_the_session_budget(postgres_url: str):
    config = ControllerConfig()
    stores = [PostgresStore(postgres_url), PostgresStore(postgres_url)]
    a, b = (ControllerCore(config, s) for s in stores)
    try:
        spec = SessionSpec.parse(
            {"service": "shop", "mode": "static", "budget": {"cpu_fraction": 0.005}}
        )
        session = a.open_session(spec)
        same = _poll(a, "i-1", 0)
        other = _poll(a, "i-2", 0)
        _poll(a, "i-1", same)  # credited where it was decided
        _poll(b, "i-2", other)  # credited by the other replica
        here = stores[0].get_decision("i-1", same)
        there = stores[0].get_decision("i-2", other)
        assert here is not None and there is not None
        assert here["session_id"] == session["id"]
        # 0.05 CPU-s in a 5 s window = 1 % of a core, against the session's 0.5 %
        assert here["reward_terms"]["cpu_cost"] == pytest.approx(2.0)
        assert there["reward_terms"]["cpu_cost"] == pytest.approx(2.0)
    finally:
        for s in stores:
            s.close()

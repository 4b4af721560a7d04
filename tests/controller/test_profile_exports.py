"""A session's merged profile in all three formats, fetched from the real controller."""

from __future__ import annotations

import gzip
import importlib
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from otel_adaprof.exporters.collapsed import parse_collapsed
from tests.controller.polls import poll_body
from tests.support.controller import ControllerProcess

HERE = Path(__file__).parent
BURN = "main (app.py:1);handle (app.py:9);burn_cpu (work.py:3)"
QUERY = "main (app.py:1);query (db.py:4)"


@pytest.fixture
def session_with_samples(controller: ControllerProcess) -> str:
    sid = controller.request("POST", "/v1/sessions", {"service": "shop", "mode": "static"})["id"]
    version = 0
    for agent in ("a-1", "a-2"):  # two agents, two windows each: merged across both
        version = 0
        for _ in range(3):
            version = controller.request(
                "POST", "/v1/agents/poll", poll_body(agent, version, stacks={BURN: 30, QUERY: 5})
            )["config_version"]
    return str(sid)


def test_collapsed(controller: ControllerProcess, session_with_samples: str):
    status, body = controller.raw(
        "GET", f"/v1/sessions/{session_with_samples}/profile?format=collapsed"
    )
    assert status == 200
    assert parse_collapsed(body.decode()) == {BURN: 120, QUERY: 20}
    assert body.decode().splitlines()[0] == f"{BURN} 120"


def test_speedscope_matches_the_schema(controller: ControllerProcess, session_with_samples: str):
    doc = controller.request(
        "GET", f"/v1/sessions/{session_with_samples}/profile?format=speedscope"
    )
    schema = json.loads((HERE / "speedscope.schema.json").read_text())
    jsonschema.validate(doc, schema)
    frames = doc["shared"]["frames"]
    profile = doc["profiles"][0]
    assert profile["endValue"] == sum(profile["weights"]) == 140
    for sample in profile["samples"]:
        assert all(0 <= i < len(frames) for i in sample)
    names = {
        tuple(frames[i]["name"] for i in s): w
        for s, w in zip(profile["samples"], profile["weights"], strict=True)
    }
    assert names[("main", "handle", "burn_cpu")] == 120
    burn = next(f for f in frames if f["name"] == "burn_cpu")
    assert burn == {"name": "burn_cpu", "file": "work.py", "line": 3}


def _pprof_module(tmp_path: Path) -> Any:
    from grpc_tools import protoc

    out = tmp_path / "gen"
    out.mkdir()
    code = protoc.main(
        ["protoc", f"-I{HERE}", f"--python_out={out}", str(HERE / "pprof_profile.proto")]
    )
    assert code == 0
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module("pprof_profile_pb2")
    finally:
        sys.path.remove(str(out))


def test_pprof_decodes_with_the_profile_proto(
    controller: ControllerProcess, session_with_samples: str, tmp_path: Path
):
    status, body = controller.raw(
        "GET", f"/v1/sessions/{session_with_samples}/profile?format=pprof"
    )
    assert status == 200
    pb = _pprof_module(tmp_path)
    profile = pb.Profile()
    profile.ParseFromString(gzip.decompress(body))
    strings = list(profile.string_table)
    assert strings[0] == ""
    assert [(strings[t.type], strings[t.unit]) for t in profile.sample_type] == [
        ("samples", "count"),
        ("cpu", "nanoseconds"),
    ]
    functions = {f.id: (strings[f.name], strings[f.filename]) for f in profile.function}
    locations = {loc.id: loc for loc in profile.location}
    stacks = {}
    for sample in profile.sample:
        frames = [functions[locations[i].line[0].function_id][0] for i in sample.location_id]
        stacks[tuple(frames)] = list(sample.value)
    # pprof puts the leaf first
    assert stacks[("burn_cpu", "handle", "main")] == [120, 120 * profile.period]
    assert stacks[("query", "main")][0] == 20
    assert functions[locations[profile.sample[0].location_id[0]].line[0].function_id] == (
        "burn_cpu",
        "work.py",
    )
    assert profile.time_nanos > 0


def test_unknown_format_names_the_parameter(
    controller: ControllerProcess, session_with_samples: str
):
    status, body = controller.raw("GET", f"/v1/sessions/{session_with_samples}/profile?format=svg")
    assert status == 400
    error = json.loads(body)
    assert error["field"] == "format" and "speedscope, collapsed, pprof" in error["message"]

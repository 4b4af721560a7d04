"""``adaprof session start|status|export|stop`` against the real controller."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

from tests.controller.polls import poll_body
from tests.support.controller import ControllerProcess

ADAPROF = Path(sys.executable).with_name("adaprof")
TOKEN = "cli-token-1234"


def adaprof(
    ctl: ControllerProcess, *args: str, token: str | None = TOKEN
) -> subprocess.CompletedProcess[str]:
    cmd = [str(ADAPROF), "session", "--controller", ctl.url]
    if token:
        cmd += ["--token", token]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=60, check=False)


def test_session_commands(tmp_path: Path):
    params = tmp_path / "params.yaml"
    params.write_text("sampling_interval_ms: 10\nstack_depth: 16\n")
    with ControllerProcess(tmp_path / "adaprof.db", token=TOKEN) as ctl:
        started = adaprof(
            ctl,
            "start",
            "--service",
            "shop",
            "--duration",
            "60",
            "--mode",
            "static",
            "--params",
            str(params),
            "--json",
        )
        assert started.returncode == 0, started.stderr
        sid = json.loads(started.stdout)["id"]
        version = 0
        for _ in range(3):
            version = ctl.request("POST", "/v1/agents/poll", poll_body("a-1", version))[
                "config_version"
            ]

        status = adaprof(ctl, "status", sid, "--json")
        data = json.loads(status.stdout)
        assert data["params"]["stack_depth"] == 16 and data["counts"]["reports"] == 2
        table = adaprof(ctl, "status")
        assert table.returncode == 0 and sid[:4] in table.stdout and "shop" in table.stdout

        for fmt, name in (
            ("pprof", "p.pb.gz"),
            ("collapsed", "p.txt"),
            ("speedscope", "p.json"),
            ("timeline", "t.json"),
        ):
            out = tmp_path / name
            done = adaprof(ctl, "export", sid, "--format", fmt, "-o", str(out))
            assert done.returncode == 0, done.stderr
            assert out.stat().st_size > 0
        assert gzip.decompress((tmp_path / "p.pb.gz").read_bytes())
        assert "burn_cpu" in (tmp_path / "p.txt").read_text()
        assert len(json.loads((tmp_path / "t.json").read_text())["windows"]) == 2

        denied = adaprof(ctl, "stop", sid, token=None)
        assert denied.returncode == 2 and "HTTP 401" in denied.stderr
        stopped = adaprof(ctl, "stop", sid)
        assert stopped.returncode == 0 and "completed" in stopped.stdout

        missing = adaprof(ctl, "status", "nope")
        assert missing.returncode == 2 and "no session 'nope'" in missing.stderr


def test_unreachable_controller_is_a_clear_error(tmp_path: Path):
    result = subprocess.run(
        [str(ADAPROF), "session", "--controller", "http://127.0.0.1:9", "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "cannot reach the controller at http://127.0.0.1:9" in result.stderr

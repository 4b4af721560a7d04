"""Two controller replicas (real subprocesses) on one real PostgreSQL server.

Agents are a round-robin client: each poll goes to the next replica; a replica that
does not answer is skipped at once. The test SIGKILLs the replica that owns the
service's model while agents poll, and checks:

- polls were spread across both replicas;
- every agent's next poll after the kill is answered (by the survivor) within one poll
  interval of when it was due;
- no acknowledged session, report or decision is missing from the database;
- the survivor owns the model within the lease time (plus one ownership pass), took
  over from the snapshot the killed owner last wrote, and every credited decision ends
  up learned by the model in the database.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg

from otel_adaprof.controller.model_lease import PASS_INTERVAL_S
from tests.controller.polls import poll_body
from tests.support.controller import ControllerProcess
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_until

LEASE_S = 3.0
RENEW_S = 1.0
POLL_INTERVAL_S = 0.5
AGENTS = 8


class RoundRobinAgent(threading.Thread):
    """An agent polling the replicas in turn every ``POLL_INTERVAL_S``."""

    def __init__(self, name: str, replicas: list[ControllerProcess], stop: threading.Event):
        super().__init__(daemon=True)
        self.name = name
        self.replicas = replicas
        self.stop = stop
        self.version = 0
        self.next = hash(name) % len(replicas)
        #: (monotonic time answered, replica index, version reported, version answered)
        self.acked: list[tuple[float, int, int, int]] = []
        self.failovers = 0

    def run(self) -> None:
        while not self.stop.is_set():
            due = time.monotonic()
            for _ in range(len(self.replicas)):
                index = self.next
                self.next = (self.next + 1) % len(self.replicas)
                try:
                    answer = self.replicas[index].request(
                        "POST", "/v1/agents/poll", poll_body(self.name, self.version), timeout=3
                    )
                except (OSError, AssertionError):
                    self.failovers += 1
                    continue  # this replica is down: the next one, at once
                self.acked.append((time.monotonic(), index, self.version, answer["config_version"]))
                self.version = answer["config_version"]
                break
            self.stop.wait(max(0.0, POLL_INTERVAL_S - (time.monotonic() - due)))


def _replica(ctl: ControllerProcess) -> dict:
    return ctl.request("GET", "/v1/replicas")


def test_sigkill_of_the_owner_replica_under_load(tmp_path: Path, postgres_url: str):
    config = tmp_path / "controller.yaml"
    config.write_text(
        f"database:\n  lease_s: {LEASE_S}\n  lease_renew_s: {RENEW_S}\n"
        f"agents:\n  poll_interval_s: {POLL_INTERVAL_S}\n"
    )
    replicas = [
        ControllerProcess(tmp_path / f"r{i}.db", "--config", str(config), db_url=postgres_url)
        for i in range(2)
    ]
    for r in replicas:
        r.start()
    stop = threading.Event()
    agents: list[RoundRobinAgent] = []
    try:
        session = replicas[1].request("POST", "/v1/sessions", {"service": "shop"})["id"]
        agents = [RoundRobinAgent(f"a-{i}", replicas, stop) for i in range(AGENTS)]
        for a in agents:
            a.start()
        owner_id = wait_until(
            lambda: next(iter(_replica(replicas[0])["leases"]), {}).get("owner"),
            timeout=10,
            what="an owner of the model of 'shop'",
        )
        wait_until(
            lambda: min(len(a.acked) for a in agents) >= 6, timeout=20, what="agents polling"
        )
        served = [sum(1 for a in agents for ack in a.acked if ack[1] == i) for i in range(2)]
        assert min(served) >= 0.3 * sum(served), f"polls not spread across replicas: {served}"

        owner = next(
            i for i, r in enumerate(replicas) if _replica(r)["replica"]["replica"] == owner_id
        )
        survivor = 1 - owner
        # the killed owner has written at least one snapshot by now (it learned)
        wait_until(lambda: _generation(postgres_url) >= 1, timeout=10, what="a model snapshot")
        killed_at = time.monotonic()
        replicas[owner].kill()  # SIGKILL under load
        last_generation = _generation(postgres_url)  # the dead owner wrote nothing since

        def survivor_owns() -> bool:
            return _replica(replicas[survivor])["replica"]["owned"] == ["shop"]

        wait_until(survivor_owns, timeout=LEASE_S + 10, what="the survivor to own 'shop'")
        took_over_s = time.monotonic() - killed_at
        assert took_over_s <= LEASE_S + PASS_INTERVAL_S + 0.5, took_over_s
        time.sleep(3 * POLL_INTERVAL_S)  # decisions from the survivor's model
        stop.set()
        for a in agents:
            a.join(timeout=10)

        # every agent continued through the survivor within one poll interval
        for a in agents:
            times = [ack[0] for ack in a.acked]
            before = [t for t in times if t <= killed_at]
            after = [t for t in times if t > killed_at]
            assert before and len(after) >= 3, (a.name, len(before), len(after))
            assert after[0] - before[-1] <= 2 * POLL_INTERVAL_S + 0.3, (
                a.name,
                after[0] - before[-1],
            )
            assert all(ack[1] == survivor for ack in a.acked if ack[0] > killed_at + 0.5)
        assert sum(a.failovers for a in agents) >= 1  # the kill was seen by some agent

        state = _replica(replicas[survivor])["replica"]["models"]["shop"]
        assert state["role"] == "owner" and state["epoch"] >= 2
        assert state["restored_generation"] == last_generation >= 1
        got = replicas[survivor].request("GET", f"/v1/sessions/{session}")
        assert got["state"] == "open"

        with psycopg.connect(postgres_url) as db:
            for a in agents:  # every acknowledged decision and report is stored
                versions = {
                    v
                    for (v,) in db.execute(
                        "SELECT config_version FROM decisions WHERE instance_id = %s", (a.name,)
                    )
                }
                reported = {
                    v
                    for (v,) in db.execute(
                        "SELECT config_version FROM reports WHERE instance_id = %s", (a.name,)
                    )
                }
                for _, _, sent, answered in a.acked:
                    assert answered in versions, (a.name, answered)
                    assert sent == 0 or sent in reported, (a.name, sent)
            sessions = db.execute("SELECT id, state FROM sessions").fetchall()
            assert sessions == [(session, "open")]

        def all_learned() -> bool:
            with psycopg.connect(postgres_url) as db:
                row = db.execute(
                    "SELECT COUNT(*) FILTER (WHERE NOT learned), COUNT(*) FROM decisions "
                    "WHERE reward IS NOT NULL AND policy = 'adaptive'"
                ).fetchone()
            assert row is not None
            return row[0] == 0 and row[1] > 0

        # no reward lost: the new owner learns what the killed one had not snapshotted
        wait_until(all_learned, timeout=5 * PASS_INTERVAL_S, what="every reward learned")
    finally:
        stop.set()
        for a in agents:
            a.join(timeout=5)
        for r in replicas:
            r.kill()


def _generation(url: str) -> int:
    with psycopg.connect(url) as db:
        row = db.execute("SELECT generation FROM model_snapshots WHERE service = 'shop'").fetchone()
    return int(row[0]) if row else 0


def test_database_crash_and_restart_under_two_replicas(
    tmp_path: Path, postgres_server: PostgresServer, postgres_url: str
):
    """PostgreSQL killed (immediate stop: crash recovery on start) and back after 2 s:
    polls fail while it is away, both replicas answer again once it is back, nothing
    acknowledged is lost, and the model has one owner again."""
    config = tmp_path / "controller.yaml"
    config.write_text(
        f"database:\n  lease_s: {LEASE_S}\n  lease_renew_s: {RENEW_S}\n"
        f"agents:\n  poll_interval_s: {POLL_INTERVAL_S}\n"
    )
    replicas = [
        ControllerProcess(tmp_path / f"r{i}.db", "--config", str(config), db_url=postgres_url)
        for i in range(2)
    ]
    for r in replicas:
        r.start()
    stop = threading.Event()
    agents: list[RoundRobinAgent] = []
    try:
        replicas[0].request("POST", "/v1/sessions", {"service": "shop"})
        agents = [RoundRobinAgent(f"a-{i}", replicas, stop) for i in range(4)]
        for a in agents:
            a.start()
        wait_until(lambda: min(len(a.acked) for a in agents) >= 4, timeout=20, what="polls")
        down_at = time.monotonic()
        postgres_server.restart(mode="immediate", down_s=2.0)
        up_at = time.monotonic()
        wait_until(
            lambda: all(sum(1 for ack in a.acked if ack[0] > up_at) >= 3 for a in agents),
            timeout=15,
            what="agents answered again after the restart",
        )
        back_s = min(next(ack[0] for ack in a.acked if ack[0] > up_at) for a in agents) - up_at
        stop.set()
        for a in agents:
            a.join(timeout=10)
        assert sum(a.failovers for a in agents) >= 1  # polls did fail while it was away
        assert back_s < 5.0, back_s
        assert all(
            not any(down_at + 0.2 < ack[0] < up_at - 0.2 for ack in a.acked) for a in agents
        )  # nothing was acknowledged while the database was away
        for r in replicas:
            r.request("GET", "/readyz")
        with psycopg.connect(postgres_url) as db:
            for a in agents:
                versions = {
                    v
                    for (v,) in db.execute(
                        "SELECT config_version FROM decisions WHERE instance_id = %s", (a.name,)
                    )
                }
                assert {ack[3] for ack in a.acked} <= versions, a.name

        def one_owner() -> bool:
            owners = [_replica(r)["replica"]["owned"] for r in replicas]
            return sorted(owners) == [[], ["shop"]]

        wait_until(one_owner, timeout=LEASE_S + 3, what="one owner of 'shop' again")
    finally:
        stop.set()
        for a in agents:
            a.join(timeout=5)
        for r in replicas:
            r.kill()
        if not postgres_server.running():
            postgres_server.start()

"""Model ownership between two replicas in one process (two cores, two pools, one real
PostgreSQL database): the owner learns every credited decision through the database,
the follower decides from the newest snapshot, a replica that lost its lease stops
writing the model."""

from __future__ import annotations

import json
import time

import psycopg

from otel_adaprof.controller.config import ControllerConfig
from otel_adaprof.controller.model_lease import OwnedPolicyRegistry, SharedPolicy
from otel_adaprof.controller.policy.vw import VWPolicy
from otel_adaprof.controller.polling import ControllerCore
from otel_adaprof.controller.store_postgres import PostgresStore
from otel_adaprof.protocol import decode_poll_request
from otel_adaprof.session_spec import SessionSpec
from tests.controller.polls import poll_body


def _poll(core: ControllerCore, name: str, version: int) -> int:
    request = decode_poll_request(json.dumps(poll_body(name, version)).encode())
    return core.poll(request).config_version


def test_owner_learns_follower_reloads_and_a_lost_lease_is_fenced(postgres_url: str):
    config = ControllerConfig.parse({"database": {"lease_s": 6.0, "lease_renew_s": 0.5}})
    stores = [PostgresStore(postgres_url), PostgresStore(postgres_url)]
    a, b = (ControllerCore(config, s) for s in stores)
    ra, rb = a.policies, b.policies
    assert isinstance(ra, OwnedPolicyRegistry) and isinstance(rb, OwnedPolicyRegistry)
    try:
        a.open_session(SessionSpec.parse({"service": "shop", "mode": "adaptive"}))
        ra.tick()
        rb.tick()
        assert ra.owned() == ["shop"] and rb.owned() == []
        assert isinstance(rb.adaptive("shop"), SharedPolicy)

        # agents poll both replicas in turn: the rewards are credited by both
        versions = {f"i-{k}": 0 for k in range(4)}
        for n in range(6):
            for k, name in enumerate(versions):
                core = (a, b)[(n + k) % 2]
                versions[name] = _poll(core, name, versions[name])
        credited = [
            d
            for d in stores[0].decisions()
            if d["reward"] is not None and d["policy"] == "adaptive"
        ]
        assert len(credited) == 20
        assert ra.describe()["models"]["shop"]["learned"] == 0  # nothing learned in the poll
        ra.tick()  # the owner learns all of them, from both replicas, and snapshots
        assert ra.describe()["models"]["shop"]["learned"] == 20
        assert stores[0].credited_to_learn("shop") == []
        generation = stores[0].model_generation("shop")
        assert generation >= 1
        rb.tick()  # the follower reloads the newest snapshot
        follower = rb.describe()["models"]["shop"]
        assert follower["role"] == "follower" and follower["generation"] == generation
        blob = stores[0].load_model("shop")
        assert blob is not None
        reference = VWPolicy.from_config(config.policy)
        reference.restore(blob)  # what "restored from the newest snapshot" serializes to
        assert rb.adaptive("shop").snapshot() == reference.snapshot()

        # a's lease runs out (as if a were cut off from the database) and b takes it
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute("UPDATE model_leases SET expires_at = 0")
        rb.tick()
        assert rb.owned() == ["shop"]
        assert rb.describe()["models"]["shop"]["restored_generation"] == generation
        time.sleep(0.6)  # a's renewal is due: refused, a follows again
        ra.tick()
        assert ra.owned() == [] and ra.losses == 1
        # the old owner's epoch can no longer write the snapshot
        assert not stores[0].save_owned_model(
            "shop", b"stale", 1.0, owner=ra.replica_id, epoch=1, learned_ids=[]
        )
        assert stores[0].load_model("shop") != b"stale"
    finally:
        for s in stores:
            s.close()

"""The deployment files hang together: no container engine here, so check references.

CI does not run the compose stack; these tests make sure that every file, service,
port and data source the YAML files name exists and agrees.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
CONFIGS = ROOT / "configs"


def load(path: Path):
    with path.open() as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def compose():
    return load(DOCKER / "compose.yaml")


@pytest.fixture(scope="module")
def collector():
    return load(CONFIGS / "otel-collector.yaml")


def container_ports(service: dict) -> set[int]:
    """Ports a compose service publishes (container side)."""
    ports = set()
    for spec in service.get("ports", []):
        ports.add(int(str(spec).split(":")[-1].split("/")[0]))
    return ports


# Ports the images listen on without being published (image defaults).
IMAGE_PORTS = {
    "jaegertracing/all-in-one": {4317, 4318, 16686, 14250, 14268},
    "grafana/tempo": {3200, 4317, 4318},
    "otel/opentelemetry-collector-contrib": {4317, 4318, 13133},
    "grafana/grafana": {3000},
    "grafana/pyroscope": {4040},
}


def listening_ports(service: dict) -> set[int]:
    image = str(service.get("image", "")).split(":")[0]
    return container_ports(service) | IMAGE_PORTS.get(image, set())


def test_every_yaml_parses():
    files = [*CONFIGS.rglob("*.yaml"), *DOCKER.rglob("*.yaml")]
    assert len(files) >= 5
    for path in files:
        assert load(path) is not None, path


def test_compose_services_and_depends_on_exist(compose):
    services = compose["services"]
    expected = {
        "otel-collector", "jaeger", "tempo", "pyroscope", "grafana", "controller", "demo",
        "loadgen",
    }  # fmt: skip
    assert expected <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        for dep in svc.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown service {dep}"
        mode = svc.get("network_mode", "")
        if mode.startswith("service:"):
            assert mode.split(":", 1)[1] in services


def test_compose_bind_mounts_and_named_volumes_exist(compose):
    named = set(compose.get("volumes", {}))
    for name, svc in compose["services"].items():
        for spec in svc.get("volumes", []):
            source = spec.split(":")[0]
            if source.startswith((".", "/")):
                assert (DOCKER / source).resolve().exists(), f"{name}: {source} missing"
            else:
                assert source in named, f"{name}: volume {source} not declared"


def test_compose_builds_point_at_existing_dockerfiles(compose):
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if build:
            context = (DOCKER / build["context"]).resolve()
            assert (context / build["dockerfile"]).is_file(), name


@pytest.mark.parametrize("dockerfile", ["Dockerfile.controller", "Dockerfile.service"])
def test_dockerfile_copy_sources_exist(dockerfile):
    text = (DOCKER / dockerfile).read_text()
    copies = re.findall(r"^COPY\s+(.+)$", text, flags=re.M)
    assert copies
    for line in copies:
        *sources, _dest = line.split()
        for src in sources:
            assert (ROOT / src).exists(), f"{dockerfile}: COPY {src} missing"


def test_service_image_runs_the_demo_under_opentelemetry_instrument(compose):
    text = (DOCKER / "Dockerfile.service").read_text()
    assert '"opentelemetry-instrument"' in text and "otel_adaprof.demo.service" in text
    assert (ROOT / "otel_adaprof/demo/service.py").is_file()
    assert "SYS_PTRACE" in compose["services"]["demo"]["cap_add"]
    assert "fallback" in text.lower()  # the note on running without ptrace


def test_collector_pipeline_is_complete(collector):
    pipeline = collector["service"]["pipelines"]["traces"]
    assert pipeline["receivers"] == ["otlp"]
    assert pipeline["processors"][0] == "memory_limiter"
    assert "batch" in pipeline["processors"]
    for kind in ("receivers", "processors", "exporters"):
        for name in pipeline[kind]:
            assert name in collector[kind], f"pipeline uses undefined {kind[:-1]} {name}"
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert {"grpc", "http"} <= set(protocols)
    assert {"otlp/jaeger", "otlp/tempo"} <= set(pipeline["exporters"])


def test_collector_exporters_name_compose_services_and_ports(compose, collector):
    services = compose["services"]
    for name, exporter in collector["exporters"].items():
        if not name.startswith("otlp"):
            continue
        host, port = exporter["endpoint"].rsplit(":", 1)
        assert host in services, f"exporter {name} points at unknown host {host}"
        assert int(port) in listening_ports(services[host]), f"{name}: {host} has no {port}"
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"


def test_collector_receiver_ports_are_published(compose, collector):
    published = container_ports(compose["services"]["otel-collector"])
    for proto in collector["receivers"]["otlp"]["protocols"].values():
        assert int(proto["endpoint"].rsplit(":", 1)[1]) in published


def test_services_send_to_the_collector_and_controller(compose, collector):
    env = compose["services"]["demo"]["environment"]
    otlp = urlparse(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert otlp.hostname in compose["services"]
    http_port = int(collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].split(":")[1])
    assert otlp.port == http_port
    ctl = urlparse(env["ADAPROF_CONTROLLER_URL"])
    assert ctl.hostname == "controller"
    assert ctl.port in container_ports(compose["services"]["controller"])
    assert "--port" in (DOCKER / "Dockerfile.controller").read_text()


def test_tempo_receives_otlp_grpc_on_the_port_the_collector_uses(collector):
    tempo = load(CONFIGS / "tempo.yaml")
    grpc = tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
    assert grpc.endswith(":" + collector["exporters"]["otlp/tempo"]["endpoint"].split(":")[1])
    assert tempo["server"]["http_listen_port"] == 3200


def test_grafana_datasources_name_compose_services(compose):
    ds_file = CONFIGS / "grafana/provisioning/datasources/datasources.yaml"
    sources = load(ds_file)["datasources"]
    types = {s["type"] for s in sources}
    assert {"tempo", "jaeger", "grafana-pyroscope-datasource"} <= types
    services = compose["services"]
    for source in sources:
        url = urlparse(source["url"])
        assert url.hostname in services, source["name"]
        assert url.port in listening_ports(services[url.hostname]), source["name"]
    mount = next(v for v in services["grafana"]["volumes"] if "provisioning" in v)
    assert mount.split(":")[1] == "/etc/grafana/provisioning"


def test_controller_config_in_image_is_valid():
    from otel_adaprof.controller.config import ControllerConfig

    ControllerConfig.parse(load(CONFIGS / "controller.yaml"))


# OTLP profiles: agent → collector (profiles pipeline) → Pyroscope ← Grafana ← Tempo


def test_collector_has_a_profiles_pipeline_to_pyroscope(compose, collector):
    pipeline = collector["service"]["pipelines"]["profiles"]
    assert pipeline["receivers"] == ["otlp"]
    for kind in ("receivers", "processors", "exporters"):
        for name in pipeline.get(kind, []):
            assert name in collector[kind], f"profiles pipeline uses undefined {name}"
    (exporter,) = pipeline["exporters"]
    host, port = collector["exporters"][exporter]["endpoint"].rsplit(":", 1)
    assert host == "pyroscope" and int(port) in listening_ports(compose["services"][host])
    # the profiles signal is behind a feature gate: the compose command must pass it
    command = " ".join(compose["services"]["otel-collector"]["command"])
    assert "--feature-gates=service.profilesSupport" in command
    assert "service.profilesSupport" in (CONFIGS / "otel-collector.yaml").read_text()
    # a Collector that reads the Sample layout the agent writes (proto >= 1.10, contrib >= 0.148)
    tag = compose["services"]["otel-collector"]["image"].rsplit(":", 1)[1]
    assert tuple(int(x) for x in tag.split(".")) >= (0, 148, 0), tag


def test_the_demo_exports_profiles_to_the_collector(compose, collector):
    env = compose["services"]["demo"]["environment"]
    assert env["ADAPROF_PROFILES_EXPORT"] == "otlp"
    from otel_adaprof.exporters.otlp_http import endpoint_from_env
    from otel_adaprof.instrumentation.settings import AgentSettings

    dockerfile_env = dict(
        re.findall(r"(OTEL_\w+)=(\S+)", (DOCKER / "Dockerfile.service").read_text())
    )
    target = endpoint_from_env({**dockerfile_env, **env})  # protocol http/protobuf
    url = urlparse(target.url)
    assert url.hostname == "otel-collector" and url.path == "/v1development/profiles"
    assert f"0.0.0.0:{url.port}" == collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert AgentSettings.from_env(env).profiles_export == "otlp"


def test_grafana_links_tempo_traces_to_pyroscope_profiles(compose):
    sources = load(CONFIGS / "grafana/provisioning/datasources/datasources.yaml")["datasources"]
    by_uid = {s["uid"]: s for s in sources}
    tempo = next(s for s in sources if s["type"] == "tempo")
    link = tempo["jsonData"]["tracesToProfiles"]
    pyroscope = by_uid[link["datasourceUid"]]
    assert pyroscope["type"] == "grafana-pyroscope-datasource"
    assert urlparse(pyroscope["url"]).hostname == "pyroscope"
    # what Pyroscope calls samples/count with a cpu/nanoseconds period (our OTLP profiles)
    from otel_adaprof.exporters.otlp_profiles import PERIOD_TYPE, SAMPLE_TYPE

    assert link["profileTypeId"] == "process_cpu:cpu:nanoseconds:cpu:nanoseconds"
    assert (SAMPLE_TYPE, PERIOD_TYPE) == (("samples", "count"), ("cpu", "nanoseconds"))
    assert {"key": "service.name", "value": "service_name"} in link["tags"]
    assert "pyroscope" in compose["services"]["grafana"]["depends_on"]

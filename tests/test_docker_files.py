"""docker/ stays runnable between smoke runs: the compose files and the Dockerfile are parsed and checked here,
with no docker daemon (docker/smoke builds and runs them for real, by hand).

    compose = load_compose("compose.yaml")
    compose["services"]["db"]["healthcheck"]["test"]        # ['CMD-SHELL', 'pg_isready -h 127.0.0.1 ...']
"""

from __future__ import annotations

import os
import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml

from lce.db import roles

pytestmark = pytest.mark.slow  # the docker files, parsed (docker/smoke runs them)

DOCKER = Path(__file__).resolve().parent.parent / "docker"
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)")  # ${NAME}, ${NAME:-default}, ${NAME:?message}


def load_compose(name: str) -> dict:
    return yaml.safe_load((DOCKER / name).read_text())


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def dockerfile_args(path: Path) -> dict[str, str | None]:
    args = {}
    for keyword, rest in dockerfile_instructions(path):
        if keyword == "ARG":
            name, has_default, default = rest.partition("=")
            args[name] = default if has_default else None
    return args


def env_example_keys() -> set[str]:
    return {line.split("=", 1)[0] for line in (DOCKER / "env.example").read_text().splitlines()
            if line and not line.startswith("#") and "=" in line}


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_compose("compose.yaml")


def test_compose_has_the_database_lce_and_ray_services(compose):
    assert set(compose["services"]) == {"db", "lce", "ray-head", "ray-worker"}
    assert set(compose["volumes"]) == {"pgdata", "lce-home"}


def test_only_the_ray_services_sit_behind_a_profile(compose):
    """`docker compose up db` and `docker compose run lce ...` must not need --profile."""
    services = compose["services"]
    assert "profiles" not in services["db"] and "profiles" not in services["lce"]
    assert services["ray-head"]["profiles"] == ["ray"] and services["ray-worker"]["profiles"] == ["ray"]


def test_database_keeps_its_data_in_a_named_volume_and_is_healthchecked(compose):
    db = compose["services"]["db"]
    assert db["image"] == "${PG_IMAGE:-postgres:17}"
    assert "pgdata:/var/lib/postgresql/data" in db["volumes"]
    assert "./initdb:/docker-entrypoint-initdb.d:ro" in db["volumes"]
    test = db["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and test[1].startswith("pg_isready -h 127.0.0.1")
    for service in ("lce", "ray-head"):
        assert compose["services"][service]["depends_on"] == {"db": {"condition": "service_healthy"}}


def test_passwords_come_from_the_env_file_and_are_required(compose):
    environment = compose["services"]["db"]["environment"]
    for key in ("POSTGRES_PASSWORD", "LCE_OWNER_PASSWORD", "LCE_READER_PASSWORD"):
        assert environment[key].startswith("${" + key + ":?"), key
    lce_environment = compose["services"]["lce"]["environment"]
    assert lce_environment["LCE_DATABASE_URL"].startswith(f"postgresql://{roles.OWNER}:${{LCE_OWNER_PASSWORD:?")
    assert lce_environment["LCE_DATABASE_READONLY_URL"].startswith(
        f"postgresql://{roles.READER}:${{LCE_READER_PASSWORD:?")
    for name in ("compose.yaml", "compose.hostnet.yaml"):
        for service in load_compose(name)["services"].values():
            for key, value in service.get("environment", {}).items():
                secret = re.search(r"://[^:@/]+:([^@]*)@", value) if "URL" in key else (
                    re.match(r"(.*)", value) if "PASSWORD" in key else None)
                assert secret is None or secret.group(1).startswith("${"), (name, key)


def test_published_ports_are_on_the_loopback_only(compose):
    published = [(name, port) for name, service in compose["services"].items() for port in service.get("ports", [])]
    assert published == [("db", "127.0.0.1:${LCE_DB_PORT:-5432}:5432")]
    for name, port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)


def test_probes_and_checkpoints_are_mounted_read_only_and_the_output_is_writable(compose):
    for name in ("lce", "ray-head", "ray-worker"):
        mounts = {volume.split(":")[-2] if volume.endswith(":ro") else volume.split(":")[-1]: volume.endswith(":ro")
                  for volume in compose["services"][name]["volumes"]}
        assert mounts == {"/var/lib/lce": False, "/probes": True, "/checkpoints": True, "/out": False}, name


def test_ray_worker_reserves_the_gpus_and_ray_sends_nothing_out(compose):
    services = compose["services"]
    devices = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "${LCE_GPUS:-all}", "capabilities": ["gpu"]}]
    head = services["ray-head"]
    assert head["entrypoint"] == ["ray"] and services["ray-worker"]["entrypoint"] == ["ray"]
    assert {"--head", "--include-dashboard=false", "--disable-usage-stats", "--num-gpus=0"} <= set(head["command"])
    assert "--address=ray-head:6379" in services["ray-worker"]["command"]
    for name in ("lce", "ray-head", "ray-worker"):
        assert services[name]["environment"]["RAY_USAGE_STATS_ENABLED"] == "0"
        assert services[name]["shm_size"] == "2gb"


def test_compose_builds_the_image_with_arguments_the_dockerfile_declares(compose):
    build = compose["services"]["lce"]["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"
    assert set(build["args"]) <= set(dockerfile_args(DOCKER / "Dockerfile"))


def test_every_variable_the_compose_files_use_is_in_env_example():
    used = set()
    for name in ("compose.yaml", "compose.hostnet.yaml"):
        used |= set(VARIABLE.findall((DOCKER / name).read_text()))
    assert used, "no ${...} found: the pattern or the files changed"
    assert used - env_example_keys() == set()


def test_env_file_is_ignored_by_git():
    ignored = (DOCKER.parent / ".gitignore").read_text().splitlines()
    assert "docker/.env" in ignored


def test_host_network_override_covers_services_of_the_main_file(compose):
    override = load_compose("compose.hostnet.yaml")
    assert set(override["services"]) == set(compose["services"])
    for name, service in override["services"].items():
        assert service["network_mode"] == "host", name
        assert "ports" not in service
    for name in ("lce", "ray-head", "ray-worker"):
        assert "@127.0.0.1:${LCE_DB_PORT:-5432}/lce" in override["services"][name]["environment"]["LCE_DATABASE_URL"]


def test_host_network_ray_head_differs_from_the_main_file_in_its_address_only(compose):
    override = load_compose("compose.hostnet.yaml")["services"]
    head = [part.replace("${RAY_HEAD_PORT:-6379}", "6379") for part in override["ray-head"]["command"]]
    assert "--node-ip-address=127.0.0.1" in head
    main = compose["services"]["ray-head"]["command"]
    assert [part for part in head if part != "--node-ip-address=127.0.0.1"] == main


def with_override(base: dict, override: dict | None) -> dict:
    """The services as `docker compose -f compose.yaml [-f OVERRIDE]` runs them: an override's keys replace the
    base's, its environment is merged into the base's."""
    services = {name: dict(service) for name, service in base["services"].items()}
    for name, changes in ((override or {}).get("services") or {}).items():
        environment = {**services[name].get("environment", {}), **changes.get("environment", {})}
        services[name].update(changes)
        services[name]["environment"] = environment
    return services


def ray_starts(services: dict) -> dict[str, list[str]]:
    """The `ray start` arguments of every service that runs one."""
    return {name: service["command"][1:] for name, service in services.items()
            if service.get("entrypoint") == ["ray"] and service.get("command", [None])[0] == "start"}


@pytest.mark.parametrize("override", [None, "compose.hostnet.yaml"])
def test_every_ray_start_names_its_address_and_wants_the_token(compose, override):
    """Ray listens where it is meant to and refuses calls without the token: a joining node names the head's
    address; a head on the host's network names 127.0.0.1 in Ray's single-node mode (which keeps it, and binds every
    port there); a head on the project's network publishes no port (it listens on its container's interfaces, the
    loopback and that network). Every Ray process, and every lce container (Ray's clients), has RAY_AUTH_MODE=token
    and the token from docker/.env, required, with no default."""
    services = with_override(compose, load_compose(override) if override else None)
    starts = ray_starts(services)
    assert set(starts) == ({"ray-head", "ray-worker"} if override is None else {"ray-head"})
    for name, arguments in starts.items():
        service = services[name]
        if "--head" in arguments:
            if service.get("network_mode") == "host":
                assert "--node-ip-address=127.0.0.1" in arguments, name
                assert service["environment"]["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0", name
            else:
                assert "ports" not in service and "network_mode" not in service, name
            assert "--include-dashboard=false" in arguments, name
        else:
            assert [a for a in arguments if a.startswith("--address=")] == ["--address=ray-head:6379"], name
    for name in ("lce", "ray-head", "ray-worker"):
        environment = services[name]["environment"]
        assert environment["RAY_AUTH_MODE"] == "token", name
        assert re.fullmatch(r"\$\{RAY_AUTH_TOKEN:\?[^}]+\}", environment["RAY_AUTH_TOKEN"]), name
    if override:  # the GPU worker cannot join a head on 127.0.0.1: it says so and stops, starting no Ray
        worker = services["ray-worker"]
        assert worker["entrypoint"][:2] == ["sh", "-c"] and "exit 1" in worker["entrypoint"][2]
        assert worker["command"] == []


def test_the_ray_token_has_no_default_and_smoke_makes_one():
    values = dict(line.split("=", 1) for line in (DOCKER / "env.example").read_text().splitlines()
                  if line and not line.startswith("#") and "=" in line)
    assert values["RAY_AUTH_TOKEN"] == ""  # docker compose refuses to start until one is set
    assert "openssl rand -hex 32" in (DOCKER / "env.example").read_text()
    assert "RAY_AUTH_TOKEN=$(password)$(password)" in (DOCKER / "smoke").read_text()


def test_dockerfile_build_arguments_default_to_public_images():
    args = dockerfile_args(DOCKER / "Dockerfile")
    assert re.fullmatch(r"python:3\.1[1-9]-slim", args["BASE_IMAGE"])
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert (args["TORCH_VERSION"], args["TORCHVISION_VERSION"]) == ("2.14.1", "0.29.1")
    assert set(args["LCE_EXTRAS"].split(",")) == {"ray", "timm", "hf"}
    extras = tomllib.loads((DOCKER.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(args["LCE_EXTRAS"].split(",")) <= set(extras)
    assert dockerfile_instructions(DOCKER / "Dockerfile")[0] == ("ARG", "BASE_IMAGE=python:3.12-slim")


def test_dockerfile_runs_lce_as_a_user_and_never_the_embedded_server():
    instructions = dockerfile_instructions(DOCKER / "Dockerfile")
    entrypoints = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints == ['["lce"]']
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users and users[-1] not in ("root", "0")
    environment = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    assert "LCE_DATABASE_URL=postgresql://" in environment  # an external server, never the embedded one
    for offline in ("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1", "RAY_USAGE_STATS_ENABLED=0"):
        assert offline in environment


def test_dockerfile_copies_what_the_wheel_carries():
    """pyproject.toml's force-include paths (migrations, sql, alembic.ini) must be in the build."""
    copied = set()
    for keyword, rest in dockerfile_instructions(DOCKER / "Dockerfile"):
        if keyword == "COPY":
            copied.update(shlex.split(rest)[:-1])
    wheel = tomllib.loads((DOCKER.parent / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert set(wheel["force-include"]) | {"pyproject.toml", "lce"} <= copied
    ignore = (DOCKER / "Dockerfile.dockerignore").read_text().splitlines()
    assert {f"!{path}" if "." in path else f"!{path}/" for path in copied} <= set(ignore)


def test_init_script_creates_the_roles_lce_uses():
    script = DOCKER / "initdb" / "10-lce-roles.sh"
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert f"CREATE ROLE {roles.OWNER} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE" in text
    assert f"CREATE ROLE {roles.READER} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT" in text
    assert f"ALTER ROLE {roles.READER} SET default_transaction_read_only = on" in text
    assert f"CREATE DATABASE lce OWNER {roles.OWNER}" in text
    for function in roles.LARGE_OBJECT_WRITERS:
        assert f"REVOKE EXECUTE ON FUNCTION pg_catalog.{function} FROM PUBLIC" in text
    for function in roles.ADVISORY_LOCKS:
        assert f"REVOKE EXECUTE ON FUNCTION pg_catalog.{function} FROM PUBLIC;" in text
        assert f"GRANT EXECUTE ON FUNCTION pg_catalog.{function} TO {roles.OWNER};" in text


@pytest.mark.parametrize("script", ["smoke", "initdb/10-lce-roles.sh", "smoke-postgres/docker-entrypoint.sh"])
def test_scripts_are_executable_and_stop_at_the_first_error(script):
    path = DOCKER / script
    assert os.access(path, os.X_OK)
    lines = path.read_text().splitlines()
    assert lines[0] in ("#!/usr/bin/env bash", "#!/bin/sh")
    wanted = "set -euo pipefail" if lines[0].endswith("bash") else "set -eu"
    assert wanted in lines


def test_smoke_runs_every_step_and_tears_down():
    text = (DOCKER / "smoke").read_text()
    assert "set -euo pipefail" in text.splitlines()
    assert re.search(r"^trap .*EXIT", text, re.MULTILINE)
    for step in ("probe synth", "probe add", "ingest --plan", " embed ", "psql", "down --volumes", "DOCKER_HOST",
                 "--executor ray --ray-address auto"):
        assert step in text, step

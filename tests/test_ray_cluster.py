"""The local Ray cluster that `lce ingest --plan --executor ray` starts listens on the loopback only and wants a
token of its own: every listening socket of its processes is on 127.0.0.1 (read with psutil), a client without the
token is refused, and nothing is left behind (no ~/.ray/auth_token, the environment as it was).

    with local_cluster(ray, 1, 0, ...): ...      # lce.ingest.ray_cluster, as lce.ingest.executors starts it
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from lce.ingest.executors import RAY_OBJECT_STORE_BYTES, worker_environment
from lce.ingest.ray_cluster import AUTH_MODE_ENV, AUTH_TOKEN_ENV, import_ray, local_cluster, token_authentication_on

pytestmark = pytest.mark.slow  # a local Ray cluster

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
# A client of the cluster's GCS: with no token, a wrong one, then the cluster's (argv[2]); what each got.
CLIENT = """
import os, sys
from ray._raylet import AuthenticationTokenLoader, Config, GcsClient
for mode, token in (("disabled", None), ("token", "0" * 64), ("token", sys.argv[2])):
    os.environ["RAY_AUTH_MODE"] = mode
    if token:
        os.environ["RAY_AUTH_TOKEN"] = token
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    try:
        GcsClient(address=sys.argv[1]).internal_kv_keys(b"", None, timeout=10)
        print("reached")
    except Exception as error:
        print("refused:", type(error).__name__)
"""


def listening(process) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every TCP socket listening in `process` and its descendants."""
    import psutil

    processes = {p.pid: p for p in [process, *process.children(recursive=True)]}
    return sorted((c.laddr.ip, c.laddr.port, processes[c.pid].name()) for c in psutil.net_connections(kind="tcp")
                  if c.status == psutil.CONN_LISTEN and c.pid in processes)


def test_the_local_cluster_listens_on_the_loopback_only_and_wants_its_token(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    psutil = pytest.importorskip("psutil")
    monkeypatch.setenv("HOME", str(tmp_path))  # where ray.init() on its own would write its token
    for name in (AUTH_MODE_ENV, AUTH_TOKEN_ENV, "RAY_AUTH_TOKEN_PATH", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    ray = import_ray()  # usage statistics off, for good
    before = dict(os.environ)
    assert not ray.is_initialized()
    with local_cluster(ray, 1, 0, object_store_memory=RAY_OBJECT_STORE_BYTES, configure_logging=False,
                       log_to_driver=False, runtime_env={"env_vars": worker_environment(True)}):
        # A worker process, listening too (a lambda travels by value: the workers do not import this module).
        pid = ray.get(ray.remote(lambda: os.getpid()).options(num_cpus=1).remote())
        sockets = listening(psutil.Process())
        assert {"gcs_server", "raylet"} <= {name for _, _, name in sockets}, sockets
        assert pid in {c.pid for c in psutil.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
        assert [s for s in sockets if s[0] not in LOOPBACK] == []
        assert token_authentication_on() and len(os.environ[AUTH_TOKEN_ENV]) == 64
        gcs = ray._private.worker.global_worker.node.gcs_address
        assert gcs.startswith("127.0.0.1:")
        without = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        client = subprocess.run([sys.executable, "-c", CLIENT, gcs, os.environ[AUTH_TOKEN_ENV]], env=without,
                                capture_output=True, text=True, timeout=60)
        assert client.stdout.split("\n")[:3] == ["refused: AuthenticationError"] * 2 + ["reached"], client.stderr
    assert not ray.is_initialized()
    # Ray's own debugger hook comes and goes with any ray.init/shutdown (an earlier test's too): not lce's doing
    assert {k: v for k, v in os.environ.items() if k != "PYTHONBREAKPOINT"} == \
        {k: v for k, v in before.items() if k != "PYTHONBREAKPOINT"}
    assert not token_authentication_on()
    assert not (tmp_path / ".ray").exists()  # the token lived in the cluster's environment only


@pytest.mark.parametrize("token_on, warned", [(False, 1), (True, 0)])
def test_joining_a_cluster_without_token_authentication_warns(monkeypatch, token_on, warned):
    """--ray-address: lce cannot make another's cluster safe, but it says when this one takes calls without a token
    (the driver joined it with RAY_AUTH_MODE not token, which a token cluster would have refused)."""
    from lce.ingest import executors

    class FakeRay:
        calls = []

        def is_initialized(self):
            return False

        def init(self, **options):
            self.calls.append(("init", options["address"]))

        def shutdown(self):
            self.calls.append(("shutdown",))

    fake = FakeRay()
    monkeypatch.setattr(executors, "import_ray", lambda: fake)
    monkeypatch.setattr(executors, "token_authentication_on", lambda: token_on)
    monkeypatch.setattr(executors, "_run_ray_tasks", lambda *args: fake.calls.append(("tasks",)))
    said = []
    executors._run_ray([], "10.0.0.7:6379", None, None, said.append)
    assert fake.calls == [("init", "10.0.0.7:6379"), ("tasks",), ("shutdown",)]
    assert len(said) == warned
    if warned:
        assert said[0].startswith("the Ray cluster at 10.0.0.7:6379 was joined without token authentication")

"""Ray for lce: the module imported with usage statistics off, and the local cluster a plan starts, which only this
machine's loopback reaches and which wants a token of its own.

    ray = import_ray()
    with local_cluster(ray, cpus=2, gpus=0, runtime_env={"env_vars": {...}}):
        ray.get(ray.remote(task).remote())        # workers of a cluster on 127.0.0.1, token authentication on

Ray (2.60) binds its gRPC servers (GCS, raylet, object manager, every worker's) to all interfaces unless the node's
address is exactly 127.0.0.1, and on Linux it turns 127.0.0.1 into the machine's network address first; its switch
for single-node clusters (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, the mode Windows and macOS run in) keeps 127.0.0.1,
so every port of the cluster listens on the loopback only. Token authentication: RAY_AUTH_MODE=token with a random
token made for this cluster, handed to Ray's processes through their environment (never written to a file, unlike
ray.init's own default, ~/.ray/auth_token, readable by others under a common umask). Both are set for the life of
the cluster only; the process's environment is as it was afterwards.
"""

from __future__ import annotations

import contextlib
import os
import secrets

from lce.errors import LceError

USAGE_STATS_ENV = "RAY_USAGE_STATS_ENABLED"
AUTH_MODE_ENV = "RAY_AUTH_MODE"  # "token": every gRPC call to the cluster must carry the token
AUTH_TOKEN_ENV = "RAY_AUTH_TOKEN"  # read before RAY_AUTH_TOKEN_PATH and ~/.ray/auth_token
AUTH_TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": the node keeps 127.0.0.1, bound on the loopback only
ADDRESS_ENV = "RAY_ADDRESS"  # ray.init() would join this cluster instead of starting one
LOOPBACK = "127.0.0.1"
TOKEN_BYTES = 32  # 256 bits, as hex: Ray compares the token as a string


def import_ray():
    """The ray module, with usage statistics off before it is imported; an LceError naming the extra when absent."""
    os.environ.setdefault(USAGE_STATS_ENV, "0")  # Ray must not reach the internet
    try:
        import ray
    except ImportError:
        raise LceError("--executor ray needs Ray, an optional extra of lce: pip install 'lce[ray]' (Ray 2.60 or "
                       "newer), then run the plan again. --executor local runs the plan on this machine's devices "
                       "without it.") from None
    return ray


@contextlib.contextmanager
def local_cluster(ray, cpus: int, gpus: int, **options):
    """A Ray cluster of this machine alone, started by ray.init(num_cpus=cpus, num_gpus=gpus, **options) with no
    dashboard, listening on 127.0.0.1 only and wanting a token made for it; shut down, and the environment
    restored, when the block ends."""
    from ray._private import ray_constants
    from ray._raylet import AuthenticationTokenLoader, Config

    saved = {name: os.environ.get(name) for name in (AUTH_MODE_ENV, AUTH_TOKEN_ENV, AUTH_TOKEN_PATH_ENV,
                                                      SINGLE_NODE_ENV, ADDRESS_ENV)}
    single_node = ray_constants.ENABLE_RAY_CLUSTER

    def settle() -> None:
        Config.initialize("")  # Ray caches the authentication mode and the token it read: read them again
        AuthenticationTokenLoader.instance().reset_cache()

    _set_environment({AUTH_MODE_ENV: "token", AUTH_TOKEN_ENV: secrets.token_hex(TOKEN_BYTES),
                      AUTH_TOKEN_PATH_ENV: None, SINGLE_NODE_ENV: "0", ADDRESS_ENV: None})
    # Read when ray was imported, perhaps before this process set SINGLE_NODE_ENV; its workers read the variable.
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        settle()
        ray.init(num_cpus=cpus, num_gpus=gpus, include_dashboard=False, _node_ip_address=LOOPBACK, **options)
        try:
            yield ray
        finally:
            ray.shutdown()
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = single_node
        _set_environment(saved)
        settle()


def _set_environment(values: dict[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def token_authentication_on() -> bool:
    """Whether this process's Ray speaks to clusters with token authentication (RAY_AUTH_MODE=token)."""
    from ray._private.authentication.authentication_utils import is_token_auth_enabled

    return is_token_auth_enabled()

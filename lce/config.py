"""Where lce keeps its data, which database it talks to, and which device it computes on.

    LCE_HOME                    data directory (embedded Postgres under $LCE_HOME/postgres); default: per-user data dir
    LCE_DATABASE_URL            an external PostgreSQL server instead of the embedded one (the owner's login)
    LCE_DATABASE_READONLY_URL   the same server's read-only login, for `lce sql` (the embedded server has its own)
    LCE_WRITE_RETRY_S           seconds an ingest keeps retrying its write when the database goes away (default 60)
    LCE_PENDING_DIR             where an ingest keeps its runs when neither the database nor LCE_HOME can take them
    LCE_PUBLISHED_DATA          the published results lce is checked against (lce.published): not in this repository

    device = pick_device("auto")                # CUDA when present, else the CPU
    budget = DeviceBudget.for_device(device)    # the block sizes it prefers (lce.dissect.memory fits them)
    with tf32("off"): ...                       # matmuls and convolutions in IEEE float32 on a GPU
    device_settings(device)                     # what a run records of it: name, TF32, torch and cuDNN
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

import lce
from lce.errors import LceError

HOME_ENV = "LCE_HOME"
DATABASE_URL_ENV = "LCE_DATABASE_URL"
READONLY_URL_ENV = "LCE_DATABASE_READONLY_URL"
WRITE_RETRY_ENV = "LCE_WRITE_RETRY_S"
PENDING_DIR_ENV = "LCE_PENDING_DIR"
PUBLISHED_DATA_ENV = "LCE_PUBLISHED_DATA"
DEFAULT_WRITE_RETRY_S = 60.0  # long enough for `lce db stop` + restart, or a server's crash recovery


def lce_home() -> Path:
    """The data directory: $LCE_HOME, else the per-user data dir (~/.local/share/lce on Linux)."""
    configured = os.environ.get(HOME_ENV)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("lce"))


def external_database_url() -> str | None:
    """$LCE_DATABASE_URL when set (an external server), else None (the embedded server)."""
    return os.environ.get(DATABASE_URL_ENV) or None


def external_readonly_url() -> str | None:
    """$LCE_DATABASE_READONLY_URL when set (the external server's read-only login), else None."""
    return os.environ.get(READONLY_URL_ENV) or None


def write_retry_s() -> float:
    """$LCE_WRITE_RETRY_S: how long an ingest retries its write against a database that went away (0: once)."""
    configured = os.environ.get(WRITE_RETRY_ENV)
    if not configured:
        return DEFAULT_WRITE_RETRY_S
    try:
        seconds = float(configured)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise LceError(f"{WRITE_RETRY_ENV}={configured!r} is not a number of seconds (0 or more).")
    return seconds


def pending_dir_override() -> Path | None:
    """$LCE_PENDING_DIR when set: the second place for pending runs (lce.db.pending), on another file system than
    LCE_HOME's so that a full one does not lose a dissection; None when unset."""
    configured = os.environ.get(PENDING_DIR_ENV)
    return Path(configured).expanduser() if configured else None


def published_data() -> Path | None:
    """$LCE_PUBLISHED_DATA when set: the folder holding the published results (lce.published says what lies
    where); None when unset."""
    configured = os.environ.get(PUBLISHED_DATA_ENV)
    return Path(configured).expanduser() if configured else None


@functools.cache
def code_version() -> str:
    """`lce <version>`, plus the git commit when running from a checkout (recorded with every result)."""
    version = f"lce {lce.__version__}"
    checkout = Path(lce.__file__).resolve().parent.parent
    if (checkout / ".git").exists():
        try:
            commit = subprocess.run(
                ["git", "-C", str(checkout), "rev-parse", "--short=12", "HEAD"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True, text=True, timeout=5, check=True,
            ).stdout.strip()
            version += f" ({commit}{'+dirty' if dirty else ''})"
        except (OSError, subprocess.SubprocessError):
            pass
    return version


DEVICES = ("auto", "cpu", "cuda")


def pick_device(name: str = "auto"):
    """The torch device for `--device`: `auto` is CUDA when present, else the CPU. The only place that picks one."""
    import torch

    if name not in DEVICES and not name.startswith("cuda:"):
        raise LceError(f"--device must be one of {', '.join(DEVICES)} (or cuda:N), not {name!r}.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LceError(f"--device {name}: no CUDA device is available here; use --device cpu (or auto).")
    if name.startswith("cuda:"):
        count = torch.cuda.device_count()
        number = name.removeprefix("cuda:")
        if not (number.isdigit() and int(number) < count):
            present = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
            raise LceError(f"--device {name}: this machine has {count} CUDA device{'s' if count != 1 else ''} "
                           f"({present}); name one of them, or use --device cuda (the first) or auto.")
    return torch.device(name)


TF32 = ("on", "off")  # lce ingest --tf32: TF32 allowed in cuDNN convolutions and cuBLAS matmuls, or IEEE float32


@contextlib.contextmanager
def tf32(setting: str = "on"):
    """TF32 for the GPU's float32 convolutions (cuDNN) and matmuls (cuBLAS) inside the block, "on" or "off" (IEEE
    float32, for results that must match the CPU's to rounding); the switches as they were afterwards. torch's
    own default is TF32 for cuDNN convolutions only. The CPU computes in float32 either way."""
    import torch

    check_tf32(setting)
    precision = "tf32" if setting == "on" else "ieee"
    # The fp32_precision switches (torch 2.9+), not the allow_tf32 flags: mixing the two APIs makes torch warn.
    switches = (torch.backends.cuda.matmul, torch.backends.cudnn.conv)
    before = [switch.fp32_precision for switch in switches]
    try:
        for switch in switches:
            switch.fp32_precision = precision
        yield
    finally:
        for switch, value in zip(switches, before):
            switch.fp32_precision = value


def check_tf32(setting: str) -> None:
    """An LceError naming --tf32's values unless `setting` is one of them."""
    if setting not in TF32:
        raise LceError(f"--tf32 must be on or off (TF32 in the GPU's float32 convolutions and matmuls; off for "
                       f"results that must match the CPU's), not {setting!r}.")


def tf32_in_effect() -> dict[str, bool]:
    """Whether TF32 is in effect now for CUDA matmuls and cuDNN convolutions (a switch set to "none" inherits its
    backend's, then torch's generic one; "none" all the way up is IEEE float32)."""
    import torch

    def resolved(*levels: str) -> bool:
        for level in levels:
            if level != "none":
                return level == "tf32"
        return False

    generic = torch.backends.fp32_precision
    return {"tf32_matmul": resolved(torch.backends.cuda.matmul.fp32_precision, generic),
            "tf32_cudnn_conv": resolved(torch.backends.cudnn.conv.fp32_precision,
                                        torch.backends.cudnn.fp32_precision, generic)}


def device_settings(device) -> dict:
    """What a run records of the device it was computed on, so that runs that differ say why: the device
    ("cuda:0"), its name (the GPU's, or the CPU's model), whether TF32 is in effect for matmuls and cuDNN
    convolutions (never on the CPU), torch's version and cuDNN's (None on the CPU)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        device, name = torch.device("cuda", index), torch.cuda.get_device_name(index)
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        precision = tf32_in_effect()
    else:
        name, cudnn = cpu_name(), None
        precision = {"tf32_matmul": False, "tf32_cudnn_conv": False}
    return {"device": str(device), "device_name": name, **precision, "torch": torch.__version__, "cudnn": cudnn}


@functools.cache
def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else what platform says), or "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


@dataclass(frozen=True)
class DeviceBudget:
    """What the dissection engine prefers to hand the device at once, and how, chosen by the device's type
    (for_device) here and nowhere else: a GPU takes large blocks (it has the memory, and fewer blocks mean fewer
    kernel launches), the CPU cache-sized ones; lce.dissect.memory lowers the sizes to what the device's memory
    allows. None of it changes a dissection's results, only its speed (thresholds stay exact up to `exact_limit`,
    and an ingest records whether they were)."""

    exact_limit: int  # values per unit times units a layer's thresholds may hold and stay exact (dissect/threshold.py)
    threshold_window: int  # bytes of pass 1's activations buffered per layer for upsampled thresholds (engine._Window)
    cell_chunk: int  # cells upsampled at once (each a few dozen floats)
    histogram_chunk: int  # values per chunk of units counted at once into a threshold histogram
    # Keep only the values that count, by boolean masks (each a host read of their number): the CPU's way, where a
    # read waits for nothing and fewer values are faster. A GPU instead works on fixed sizes, masking into a spare
    # slot, so that the host never waits for the device inside a batch (lce.instrument.syncs).
    compact: bool

    @staticmethod
    def for_device(device) -> DeviceBudget:
        """The budget of a torch device (or its name: "cpu", "cuda", "cuda:1")."""
        import torch

        return _GPU_BUDGET if torch.device(device).type == "cuda" else _CPU_BUDGET


_CPU_BUDGET = DeviceBudget(exact_limit=2**26, threshold_window=2**28, cell_chunk=2**15, histogram_chunk=2**25,
                           compact=True)
_GPU_BUDGET = DeviceBudget(exact_limit=2**29, threshold_window=2**30, cell_chunk=2**19, histogram_chunk=2**28,
                           compact=False)

"""Where a plan's rows are dissected: one after another here, in worker processes on this machine's devices, or as
Ray tasks on a cluster.

    results = run_rows(todo, "local", devices=["cuda:0", "cuda:1"], progress=update, report=print)
    results = run_rows(todo, "ray", ray_address="auto")   # one Ray task per row; LCE_DATABASE_URL must be set

Every row goes through lce.ingest.run.ingest() (one transaction per row), on the worker's device. A row that
fails, or whose worker process dies (killed, a crash in native code, the kernel's out-of-memory killer), is
"failed" and the others go on. Progress (`update(name, done, total)`) and each row's outcome come back to the
calling process as they happen; `update("models", done, total)` counts the rows.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import lce
from lce.config import (DATABASE_URL_ENV, HOME_ENV, PENDING_DIR_ENV, WRITE_RETRY_ENV, external_database_url,
                        lce_home, pick_device)
from lce.dissect.engine import Progress
from lce.errors import LceError
from lce.ingest import run as ingest_run
from lce.ingest.ray_cluster import USAGE_STATS_ENV, import_ray, local_cluster, token_authentication_on
from lce.ingest.rows import PlanRow, RowResult

EXECUTORS = ("sequential", "local", "ray")
# Ray's own floor is 75 MiB; each task hands back a few kB (its outcomes), so the store holds next to nothing.
RAY_OBJECT_STORE_BYTES = 80 * 2**20
RAY_PROGRESS_EVERY_S = 0.5  # a progress message from a Ray worker is an actor call: at most two a second per task


def check_executor(executor: str, devices: list[str] | None, ray_address: str | None) -> None:
    """An LceError for options that cannot work, said before the plan is checked: an unknown executor, options of
    another executor, an unknown device, or a Ray cluster beyond this machine with the embedded database."""
    if executor not in EXECUTORS:
        raise LceError(f"--executor must be one of {', '.join(EXECUTORS)}, not {executor!r}.")
    if devices and executor == "sequential":
        raise LceError("--devices goes with --executor local (one worker process per device) or ray (the devices of "
                       "the local Ray cluster that lce starts); the sequential executor uses each row's --device.")
    if ray_address is not None and executor != "ray":
        raise LceError("--ray-address goes with --executor ray.")
    if ray_address is not None and devices:
        raise LceError("--devices describes the local Ray cluster that lce starts; with --ray-address the cluster "
                       "has its own resources: drop --devices.")
    for device in devices or []:
        pick_device(device)  # an absent GPU is said now, not in a worker
    if executor == "ray" and ray_address is not None and not external_database_url():
        raise LceError(f"--executor ray --ray-address {ray_address}: the workers of a Ray cluster must reach the "
                       "database, and the embedded one listens on a unix socket of this machine only. Set "
                       f"{DATABASE_URL_ENV} to a PostgreSQL server every worker can reach (postgresql://user:"
                       "password@host:5432/database), or drop --ray-address to run on a local Ray cluster.")
    if executor == "ray":
        import_ray()  # a missing extra is said before the plan's models are built


def parse_devices(text: str | None) -> list[str] | None:
    """'cuda:0,cuda:1' or 'cpu,cpu' as a list (a device may repeat: one worker each); None stays None."""
    if text is None:
        return None
    devices = [part.strip() for part in text.split(",") if part.strip()]
    if not devices:
        raise LceError(f"--devices {text!r} names no device; give them separated by commas, e.g. cuda:0,cuda:1 or "
                       "cpu,cpu.")
    return devices


def _gpus() -> int:
    """The CUDA devices of this machine (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def default_devices() -> list[str]:
    """The local executor's workers when --devices is not given: every CUDA device, else one on the CPU."""
    return [f"cuda:{number}" for number in range(_gpus())] or ["cpu"]


def run_rows(todo: list[PlanRow], executor: str = "sequential", devices: list[str] | None = None,
             ray_address: str | None = None, progress: Progress | None = None,
             warn: Callable[[str], None] | None = None,
             report: Callable[[RowResult], None] | None = None) -> list[RowResult]:
    """The checked "to do" rows through ingest() with `executor`; one RowResult per row, in `todo`'s order.
    `report` hears each row as it ends (in the order they end), `progress` each ingest's passes and the models."""
    check_executor(executor, devices, ray_address)
    tracker = _Tracker(todo, progress, report)
    if executor == "local":
        _run_local(todo, devices or default_devices(), tracker, warn)
    elif executor == "ray":
        _run_ray(todo, ray_address, devices, tracker, warn)
    else:
        for index, row in enumerate(todo):
            tracker.finished(index, *ingest_row(row.request, progress, warn),
                             where=str(pick_device(row.request.device)))
    return tracker.results


class _Tracker:
    """The rows' results as they come in, with the "models" count and the report of each."""

    def __init__(self, todo, progress, report):
        self.todo, self.progress, self.report = todo, progress, report
        self.results: list[RowResult | None] = [None] * len(todo)
        self.done = 0
        if progress and todo:
            progress("models", 0, len(todo))  # first, so that its bar sits above the passes' bars

    def finished(self, index: int, outcome: str, seconds: float, reason: str = "", runs: list | None = None,
                 where: str = "") -> None:
        result = RowResult(self.todo[index], outcome, seconds, reason, runs=list(runs or []), where=where)
        self.results[index] = result
        self.done += 1
        if self.report:
            self.report(result)
        if self.progress:
            self.progress("models", self.done, len(self.todo))


def ingest_row(request, progress: Progress | None = None,
               warn: Callable[[str], None] | None = None) -> tuple[str, float, str, list]:
    """(outcome, seconds, reason, runs) of one row's ingest(): "stored" with its IngestOutcomes, or "failed" with
    the reason (an LceError's message, or any other exception such as running out of memory)."""
    started = time.perf_counter()
    try:
        runs = ingest_run.ingest(request, progress, warn=warn)  # looked up at each call (tests replace it)
        return "stored", time.perf_counter() - started, "", runs
    except LceError as error:
        return "failed", time.perf_counter() - started, str(error), []
    except Exception as error:  # out of memory, a bug in a model's forward: this row only
        reason = f"{type(error).__name__}: {error}"
        _free_memory()
        return "failed", time.perf_counter() - started, reason, []


def _free_memory() -> None:
    """What a failed row held (an out-of-memory error keeps its frames' tensors until collected)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---- local: one worker process per listed device ------------------------------------------------------------------

@dataclass
class _Slot:
    """One device of --devices: its worker process (started again after a death) and the row it holds."""
    number: int
    device: str
    process: object = None
    pipe: object = None
    row: int | None = None  # index into todo
    started: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.device} #{self.number + 1}"


def _run_local(todo: list[PlanRow], devices: list[str], tracker: _Tracker, warn) -> None:
    """Each worker takes the next row when it is free. A worker that dies fails its row only: a fresh process takes
    its device for the rows left. Messages travel over one pipe per worker (a process killed while writing to a
    shared queue would leave its lock taken), and a worker's death is seen by its process sentinel."""
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")  # no fork of a parent holding CUDA, threads or connections
    cpu_workers = sum(1 for device in devices if device == "cpu")
    # Workers on the CPU share its cores rather than each taking all of them.
    threads = max(1, (os.cpu_count() or 1) // cpu_workers) if cpu_workers else 0
    slots = [_Slot(number, device) for number, device in enumerate(devices)]
    waiting = deque(range(len(todo)))
    try:
        while waiting or any(slot.row is not None for slot in slots):
            for slot in slots:
                if slot.row is None and waiting:
                    if slot.process is None:
                        _start(context, slot, threads if slot.device == "cpu" else 0)
                    slot.row, slot.started = waiting.popleft(), time.perf_counter()
                    slot.pipe.send(replace(todo[slot.row].request, device=slot.device))
            busy = [slot for slot in slots if slot.row is not None]
            wait([slot.pipe for slot in busy] + [slot.process.sentinel for slot in busy], timeout=5)
            for slot in busy:
                _read(slot, tracker, warn)
    except BaseException:  # Ctrl-C, or a bug here: the workers stop now, not after their rows
        for slot in slots:
            _stop(slot, patience=0)
        raise
    for slot in slots:
        _stop(slot)


def _start(context, slot: _Slot, threads: int) -> None:
    ours, theirs = context.Pipe()
    slot.process = context.Process(target=_local_worker, args=(theirs, slot.device, threads),
                                   name=f"lce worker {slot.label}", daemon=True)
    slot.process.start()
    theirs.close()  # only the worker holds its end now: its death reads as the end of the pipe
    slot.pipe = ours


def _read(slot: _Slot, tracker: _Tracker, warn) -> None:
    """Everything the slot's worker has sent; its death, when it died holding a row, fails that row."""
    dead = False
    try:
        while slot.row is not None and slot.pipe.poll():
            kind, *message = slot.pipe.recv()
            if kind == "progress" and tracker.progress:
                tracker.progress(f"{slot.label} {message[0]}", message[1], message[2])
            elif kind == "warn" and warn:
                warn(f"line {tracker.todo[slot.row].line} {tracker.todo[slot.row].model}: {message[0]}")
            elif kind == "result":
                row, slot.row = slot.row, None
                tracker.finished(row, *message, where=slot.device)
    except (EOFError, OSError):
        dead = True
    if slot.row is not None and (dead or not slot.process.is_alive()):
        slot.process.join(timeout=5)
        code = slot.process.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit status {code}"
        tracker.finished(slot.row, "failed", time.perf_counter() - slot.started,
                         f"the worker process on {slot.device} (pid {slot.process.pid}) died ({how}) while "
                         "dissecting this row; nothing of it was stored (out of host memory or a crash in native "
                         "code are the usual causes). The other rows went on.", where=slot.device)
        slot.row = None
        _stop(slot)


def _stop(slot: _Slot, patience: float = 10) -> None:
    if slot.process is None:
        return
    try:
        slot.pipe.send(None)  # done: the worker returns
    except (OSError, ValueError):
        pass
    slot.process.join(timeout=patience)
    if slot.process.is_alive():
        slot.process.kill()
        slot.process.join()
    slot.pipe.close()
    slot.process = slot.pipe = None


def _local_worker(pipe, device: str, threads: int) -> None:
    """A worker process: ingest each request the driver sends, until None (or the driver's end closes)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the driver, which stops the workers
    while True:
        try:
            request = pipe.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        outcome = ingest_row(request, lambda name, done, total: pipe.send(("progress", name, done, total)),
                             lambda message: pipe.send(("warn", message)))
        pipe.send(("result", *outcome))


# ---- Ray: one task per row ----------------------------------------------------------------------------------------

def worker_environment(local: bool) -> dict[str, str]:
    """What a Ray worker needs to find the same database and data as the driver: LCE_HOME (resolved, so that a
    worker of this machine finds the embedded server's socket), LCE_DATABASE_URL, LCE_WRITE_RETRY_S,
    LCE_PENDING_DIR, no usage statistics; on a local cluster also the path lce is imported from (a checkout need not be installed)."""
    env = {HOME_ENV: str(lce_home()), USAGE_STATS_ENV: "0"}
    for name in (DATABASE_URL_ENV, WRITE_RETRY_ENV, PENDING_DIR_ENV):
        if os.environ.get(name):
            env[name] = os.environ[name]
    if local:
        source = str(Path(lce.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join([source] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return env


def local_resources(devices: list[str] | None) -> tuple[int, int]:
    """(CPUs, GPUs) of the local Ray cluster lce starts: --devices' cpu and cuda entries, else the machine's."""
    if not devices:
        return os.cpu_count() or 1, _gpus()
    cpus = sum(1 for device in devices if device == "cpu")
    return cpus or (os.cpu_count() or 1), sum(1 for device in devices if device.startswith("cuda"))


def _run_ray(todo: list[PlanRow], address: str | None, devices: list[str] | None, tracker: _Tracker, warn) -> None:
    ray = import_ray()
    if ray.is_initialized():  # a cluster the caller (a notebook, a test) joined: used as it is
        _run_ray_tasks(ray, todo, tracker, warn)
        return
    options = dict(configure_logging=False, log_to_driver=False,
                   runtime_env={"env_vars": worker_environment(address is None)})
    if address is None:
        cpus, gpus = local_resources(devices)
        with local_cluster(ray, cpus, gpus, object_store_memory=RAY_OBJECT_STORE_BYTES, **options):
            _run_ray_tasks(ray, todo, tracker, warn)
        return
    ray.init(address=address, **options)
    try:
        if warn and not token_authentication_on():
            warn(f"the Ray cluster at {address} was joined without token authentication (RAY_AUTH_MODE is not "
                 "token here), so it has none: whoever reaches its ports runs code on it. Start every node with "
                 "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (docs/security.md, Ray).")
        _run_ray_tasks(ray, todo, tracker, warn)
    finally:
        ray.shutdown()


def _run_ray_tasks(ray, todo: list[PlanRow], tracker: _Tracker, warn) -> None:
    """One task per row on the cluster ray is connected to, each outcome to the tracker as it comes."""
    from ray.util.queue import Empty, Queue

    messages = Queue(actor_options={"num_cpus": 0})
    has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    task = ray.remote(_ray_row)
    pending = {}
    for index, row in enumerate(todo):
        device = row.request.device
        gpu = device.startswith("cuda") or (device == "auto" and has_gpus)
        resources = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
        # max_retries=0: a worker that dies fails its row, as on the local executor (no silent second try).
        pending[task.options(max_retries=0, **resources).remote(index, row.request, gpu, messages)] = index
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.2)
        _drain(messages, Empty, tracker, warn)
        for reference in ready:
            index = pending.pop(reference)
            try:
                outcome, seconds, reason, runs, where = ray.get(reference)
            except Exception as error:  # the worker died (WorkerCrashedError), or Ray could not run the task
                outcome, seconds, runs, where = "failed", 0.0, [], "ray"
                reason = f"the Ray task died: {type(error).__name__}: {str(error).strip().splitlines()[0]}"
            tracker.finished(index, outcome, seconds, reason, runs, where=where)
    _drain(messages, Empty, tracker, warn)


def _drain(messages, empty, tracker: _Tracker, warn) -> None:
    while True:
        try:
            index, kind, *message = messages.get_nowait()
        except empty:
            return
        if kind == "progress" and tracker.progress:
            tracker.progress(f"{message[0]} {message[1]}", message[2], message[3])
        elif kind == "warn" and warn:
            warn(f"line {tracker.todo[index].line} {tracker.todo[index].model}: {message[0]}")


def _ray_row(index: int, request, gpu: bool, messages) -> tuple:
    """One Ray task: the row's ingest on this worker's device (Ray gives a GPU task its own CUDA_VISIBLE_DEVICES);
    (outcome, seconds, reason, runs, where). ingest() checks the probe on this machine's disk against its
    registration, naming this host (lce.probe.registry.open_registered_probe)."""
    where = f"{socket.gethostname()} {'cuda' if gpu else 'cpu'}"
    label = f"{socket.gethostname()}/{os.getpid()}"
    request = replace(request, device="cuda" if gpu else "cpu")
    last = [0.0]

    def progress(name: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done >= total or now - last[0] >= RAY_PROGRESS_EVERY_S:
            last[0] = now
            messages.put_nowait((index, "progress", label, name, done, total))

    outcome = ingest_row(request, progress, lambda message: messages.put_nowait((index, "warn", message)))
    return (*outcome, where)

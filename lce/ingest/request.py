"""What `lce ingest` was asked, checked as a whole before anything is loaded: one model, a plan of many (--plan) or
the runs an ingest saved for later (--resume), and the options that do not go together.

    asked = IngestOptions(**options)        # every option of lce ingest, by its name
    asked.mode()                            # "model", "plan" or "resume"; an LceError when options of two are mixed
    outcomes = ingest(asked.request())      # one model (lce.ingest.run)
    plan = prepare_plan(asked, said=print)  # the plan's rows read and checked, its executor and devices (plan.py)

This module imports nothing heavy: the command line loads it for every command, `lce models` included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lce.errors import LceError

MODES = ("model", "plan", "resume")
# The options that a plan's rows take as their defaults (lce.ingest.plan.read_plan): every per-model option.
PLAN_DEFAULTS = ("probe", "layer", "variant", "quantile", "iou_threshold", "seg_size", "checkpoint", "arch",
                 "random_init", "seed", "device", "tf32", "batch_size", "workers", "cache_budget", "replicates",
                 "blocks", "split", "layout", "prefix_tokens", "mean", "std", "replace", "random_control",
                 "control_seed")


@dataclass(frozen=True)
class IngestOptions:
    """The options of `lce ingest` as given, under their parameter names (None: not given)."""

    model: str | None
    probe: str | None
    layer: list[str]
    variant: str
    quantile: float | None
    iou_threshold: float
    seg_size: int | None
    checkpoint: Path | None
    arch: str | None
    random_init: bool
    seed: int
    random_control: bool
    control_seed: int | None
    device: str
    tf32: str
    batch_size: int
    workers: int
    cache_budget: str
    replicates: int
    blocks: int
    split: str
    layout: str | None
    prefix_tokens: int | None
    mean: str | None
    std: str | None
    replace: bool
    dry_run: bool
    resume: Path | None
    plan: Path | None
    skip_invalid: bool
    shard: str | None
    executor: str
    devices: str | None
    ray_address: str | None

    def mode(self) -> str:
        """"plan" (--plan), "resume" (--resume) or "model" (MODEL --probe ...): an LceError, naming the options to
        drop or add, when the options given belong to another mode or a model's are missing."""
        if self.plan is not None:
            if self.model is not None or self.resume is not None:
                raise LceError(f"Give --plan alone: its rows name the models, so drop "
                               f"{repr(self.model) if self.model is not None else '--resume'}.")
            return "plan"
        if self.skip_invalid or self.shard is not None or self.executor != "sequential" or self.devices or \
                self.ray_address:
            raise LceError("--skip-invalid, --shard, --executor, --devices and --ray-address go with --plan FILE "
                           "(lce ingest MODEL dissects on --device).")
        if self.resume is not None:
            dissecting = [name for name, given in [
                (repr(self.model), self.model is not None), ("--probe", self.probe is not None),
                ("--layer", bool(self.layer)), ("--arch", self.arch is not None),
                ("--checkpoint", self.checkpoint is not None), ("--random-init", self.random_init),
                ("--random-control", self.random_control or self.control_seed is not None)] if given]
            if dissecting:
                raise LceError(f"Give MODEL or --resume, not both: --resume {self.resume} stores runs already "
                               f"dissected, so {', '.join(dissecting)} would be ignored; drop them.")
            return "resume"
        if self.model is None:
            raise LceError("Missing MODEL: name the model to dissect (lce zoo lists the known ones), or pass --resume "
                           "FILE to store a dissection saved when the database went away.")
        if self.probe is None:
            raise LceError("Missing --probe NAME: the registered probe dataset to dissect over (lce probe list).")
        if self.control_seed is not None and not self.random_control:
            raise LceError(f"--control-seed {self.control_seed} seeds the control of --random-control: add "
                           "--random-control, or drop --control-seed.")
        return "model"

    def request(self):
        """The one model's IngestRequest (mode "model"); the settings and the request check their own values
        (DissectSettings, IngestRequest.validate)."""
        # here: the method's settings import torch, which lce models or lce sql never load
        from lce.dissect.engine import DissectSettings
        from lce.ingest.plan import parse_bytes, parse_rgb
        from lce.ingest.run import IngestRequest

        settings = DissectSettings.for_variant(self.variant, quantile=self.quantile, iou_threshold=self.iou_threshold,
                                               seg_size=self.seg_size, batch_size=self.batch_size,
                                               workers=self.workers, cache_budget=parse_bytes(self.cache_budget),
                                               replicates=self.replicates, blocks=self.blocks)
        return IngestRequest(model=self.model, probe=self.probe, layers=list(self.layer), settings=settings,
                             arch=self.arch, checkpoint=self.checkpoint, random_init=self.random_init, seed=self.seed,
                             device=self.device, split=self.split, replace=self.replace, layout=self.layout,
                             prefix_tokens=self.prefix_tokens, mean=parse_rgb("--mean", self.mean),
                             std=parse_rgb("--std", self.std), tf32=self.tf32, random_control=self.random_control,
                             control_seed=self.control_seed or 0)

    def plan_defaults(self) -> dict:
        """Every plan row's defaults: the command line's per-model options."""
        return {name: list(self.layer) if name == "layer" else getattr(self, name) for name in PLAN_DEFAULTS}


@dataclass
class PreparedPlan:
    """A plan's rows, read and checked (lce.ingest.plan.PlanRow: to do, done or invalid), with where they run."""

    rows: list
    devices: list[str] | None

    @property
    def invalid(self) -> list:
        return [row for row in self.rows if row.status == "invalid"]


def prepare_plan(asked: IngestOptions, said: Callable[[Path, str], None]) -> PreparedPlan:
    """Check the executor before any model is built (Ray's reach, absent GPUs), read the plan (its shard), store the
    runs kept when the database went away first (`said(file, what happened)` for each), then check every row."""
    # here: the plan builds requests of the method, which imports torch
    from lce.ingest.executors import check_executor, parse_devices
    from lce.ingest.plan import check_plan, parse_shard, read_plan, store_pending

    devices = parse_devices(asked.devices)
    check_executor(asked.executor, devices, asked.ray_address)
    rows = read_plan(asked.plan, asked.plan_defaults(),
                     shard=parse_shard(asked.shard) if asked.shard is not None else None)
    for pending_file, what in store_pending():
        said(pending_file, what)
    return PreparedPlan(check_plan(rows), devices)

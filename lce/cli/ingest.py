"""`lce ingest`: dissecting models into the store."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from lce.cli.app import app, console, errors, progress_bars, user_errors
from lce.vocabulary import DEFAULT_BLOCKS, DEFAULT_REPLICATES, DEFAULT_VARIANT, IOU_CUTOFF, VARIANTS, one_of
from lce.errors import LceError

# --help from lce.vocabulary: every registered variant, its default quantile and segmentation size.
VARIANT_HELP = one_of(tuple(f"{spec.name} ({spec.description})" for spec in VARIANTS)) + "."
QUANTILE_HELP = "Top fraction of activations above the threshold (default {}).".format(
    ", ".join(f"{spec.quantile:g} {spec.name}" for spec in VARIANTS))
SEG_SIZE_HELP = "Segmentation size S (default: {}).".format(
    ", ".join(f"{spec.seg_size_rule} with {spec.name}" for spec in VARIANTS))


@app.command("ingest", short_help="Dissect a model's layer(s) over a probe and store every unit.")
@user_errors
def ingest(
    model: str | None = typer.Argument(None, help="Model name: a zoo entry (lce zoo), or any name with --arch "
                                                   "(not with --resume)."),
    probe: str | None = typer.Option(None, "--probe", help="Registered probe dataset (lce probe add / lce probe "
                                                           "list); required unless --resume."),
    layer: list[str] = typer.Option([], "--layer", help="Layer by dotted module name (repeatable; default: the "
                                                        "zoo entry's, else layer4)."),
    variant: str = typer.Option(DEFAULT_VARIANT, "--variant", help=VARIANT_HELP),
    quantile: float | None = typer.Option(None, "--quantile", help=QUANTILE_HELP),
    iou_threshold: float = typer.Option(IOU_CUTOFF, "--iou-threshold", help="IoU cut-off for 'interpretable'."),
    seg_size: int | None = typer.Option(None, "--seg-size", help=SEG_SIZE_HELP),
    checkpoint: Path | None = typer.Option(None, "--checkpoint", help="Weights file (any layout of method.md §4)."),
    arch: str | None = typer.Option(None, "--arch", help="torchvision architecture (resnet50), timm:NAME, hf:DIR "
                                                         "(a saved Hugging Face model) or package.module:function "
                                                         "returning an nn.Module (lce layers lists its layers)."),
    random_init: bool = typer.Option(False, "--random-init", help="Random weights (the paper's control)."),
    seed: int = typer.Option(0, "--seed", help="Seed of --random-init."),
    random_control: bool = typer.Option(False, "--random-control", help="Also dissect the same architecture with "
                                                                        "random weights, as random:ARCH:sSEED, "
                                                                        "unless stored: the control that says "
                                                                        "which labels beat random (lce control)."),
    control_seed: int | None = typer.Option(None, "--control-seed", help="Seed of --random-control's weights "
                                                                         "(default 0)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda."),
    tf32: str = typer.Option("on", "--tf32", help="on: TF32 in the GPU's float32 convolutions and matmuls "
                                                  "(faster; torch's default for convolutions); off: IEEE float32, "
                                                  "for results that must match the CPU's. Recorded with the run."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per forward pass."),
    workers: int = typer.Option(0, "--workers", help="DataLoader worker processes."),
    cache_budget: str = typer.Option("2G", "--cache-budget", help="Activations kept from pass 1, in the "
                                                                  "device's memory, to skip the second forward "
                                                                  "pass (0 disables)."),
    replicates: int = typer.Option(DEFAULT_REPLICATES, "--replicates", help="Bootstrap replicates behind each "
                                                                            "label's interval and stability (0: no "
                                                                            "uncertainty, a little faster)."),
    blocks: int = typer.Option(DEFAULT_BLOCKS, "--blocks", help="Blocks of images the bootstrap resamples (a "
                                                                "seeded random partition of the probe)."),
    split: str = typer.Option("all", "--split", help="Probe split: train, val or all."),
    layout: str | None = typer.Option(None, "--layout", help="How the layer's output holds its units: nchw, nhwc "
                                                             "or tokens (default: what the model or the shape "
                                                             "says; lce layers shows it)."),
    prefix_tokens: int | None = typer.Option(None, "--prefix-tokens", help="With --layout tokens: the tokens "
                                                                           "before the patch grid (class, "
                                                                           "distillation, registers)."),
    mean: str | None = typer.Option(None, "--mean", help="Input normalisation mean R,G,B (with --std; default: "
                                                         "the source's, recorded with the run)."),
    std: str | None = typer.Option(None, "--std", help="Input normalisation std R,G,B (with --mean)."),
    replace: bool = typer.Option(False, "--replace", help="Swap an existing run for the same model and layer."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check everything and print the memory plan (each "
                                                          "phase's peak on the device, what is kept, the block "
                                                          "sizes); dissect and write nothing."),
    resume: Path | None = typer.Option(None, "--resume", help="Store the runs that an ingest saved under "
                                                              "$LCE_HOME/pending/ (or $LCE_PENDING_DIR) when its "
                                                              "database went away or was full (its message names "
                                                              "the file); nothing is dissected. The saved "
                                                              "command's --replace applies (or pass it here)."),
    plan: Path | None = typer.Option(None, "--plan", help="A CSV of models, one a row: a model column and any "
                                                          "per-model option as a column (layer: several separated "
                                                          "by ;); the command line's options are every row's "
                                                          "defaults. Checked and printed first, then run (see "
                                                          "--executor); rows already stored are skipped."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="With --plan: run the valid rows when some "
                                                                    "are invalid (exit 2)."),
    shard: str | None = typer.Option(None, "--shard", help="With --plan, K/N: only every N-th row from the K-th "
                                                           "(N processes together run the plan once)."),
    executor: str = typer.Option("sequential", "--executor", help="With --plan: sequential (one row after another "
                                                                  "here), local (one worker process per --devices "
                                                                  "entry) or ray (one Ray task per row; pip install "
                                                                  "'lce[ray]')."),
    devices: str | None = typer.Option(None, "--devices", help="With --executor local: the workers' devices, e.g. "
                                                               "cuda:0,cuda:1 or cpu,cpu (default: every GPU, else "
                                                               "one cpu); with ray and no --ray-address: the local "
                                                               "cluster's CPUs and GPUs."),
    ray_address: str | None = typer.Option(None, "--ray-address", help="With --executor ray: auto or HOST:PORT of "
                                                                       "a running cluster (needs LCE_DATABASE_URL); "
                                                                       "default: a local cluster."),
) -> None:
    """Dissect a model's layer(s) over a registered probe and store every unit (threshold, best concept and IoU),
    the unit x concept tallies and each unit's top images, in one transaction.

    When the database goes away during the write, the write is retried for $LCE_WRITE_RETRY_S seconds (default
    60; the embedded server is started again), then the dissection is saved under $LCE_HOME/pending/ and
    `lce ingest --resume FILE` stores it later. A database whose disk is full is not retried: the dissection is
    saved at once, under $LCE_HOME/pending/ or, when that file system is full too, $LCE_PENDING_DIR.

    Each layer's layout (nchw, nhwc, or tokens after their prefix tokens) comes from --layout, the model or the
    output's shape, and is printed with the result; an output that admits several readings stops the ingest
    before it dissects anything.

    With --random-control, the same architecture with random weights (seed --control-seed) is dissected too, as
    model random:ARCH:sSEED, unless stored, and named the control of runs of its kind (lce control).

    Example: lce ingest r18-seed1 --probe synth --arch resnet18 --random-init --seed 1;
    lce ingest supervised --probe broden --checkpoint resnet50.pth --random-control (and random:resnet50:s0);
    lce ingest vit-s-random --probe synth --arch timm:vit_small_patch16_224 --random-init --layer blocks.11;
    lce ingest dino-vits16 --probe synth --checkpoint dino_deitsmall16_pretrain.pth (a zoo model)
    """
    from lce.ingest.plan import parse_bytes, parse_rgb
    from lce.dissect.engine import DissectSettings
    from lce.ingest.run import IngestRequest
    from lce.ingest.run import ingest as run_ingest

    if plan is not None:
        if model is not None or resume is not None:
            raise LceError(f"Give --plan alone: its rows name the models, so drop "
                           f"{repr(model) if model is not None else '--resume'}.")
        defaults = dict(probe=probe, layer=list(layer), variant=variant, quantile=quantile,
                        iou_threshold=iou_threshold, seg_size=seg_size, checkpoint=checkpoint, arch=arch,
                        random_init=random_init, seed=seed, device=device, tf32=tf32, batch_size=batch_size,
                        workers=workers, cache_budget=cache_budget, replicates=replicates, blocks=blocks,
                        split=split, layout=layout, prefix_tokens=prefix_tokens, mean=mean, std=std, replace=replace,
                        random_control=random_control, control_seed=control_seed)
        _plan(plan, defaults, skip_invalid, shard, dry_run, executor, devices, ray_address)
        return
    if skip_invalid or shard is not None or executor != "sequential" or devices or ray_address:
        raise LceError("--skip-invalid, --shard, --executor, --devices and --ray-address go with --plan FILE (lce "
                       "ingest MODEL dissects on --device).")
    if resume is not None:
        dissecting = [name for name, given in [(repr(model), model is not None), ("--probe", probe is not None),
                                               ("--layer", bool(layer)), ("--arch", arch is not None),
                                               ("--checkpoint", checkpoint is not None),
                                               ("--random-init", random_init),
                                               ("--random-control", random_control or control_seed is not None)]
                     if given]
        if dissecting:
            raise LceError(f"Give MODEL or --resume, not both: --resume {resume} stores runs already dissected, "
                           f"so {', '.join(dissecting)} would be ignored; drop them.")
        _resume(resume, replace)
        return
    if model is None:
        raise LceError("Missing MODEL: name the model to dissect (lce zoo lists the known ones), or pass --resume "
                       "FILE to store a dissection saved when the database went away.")
    if probe is None:
        raise LceError("Missing --probe NAME: the registered probe dataset to dissect over (lce probe list).")
    if control_seed is not None and not random_control:
        raise LceError(f"--control-seed {control_seed} seeds the control of --random-control: add --random-control, "
                       "or drop --control-seed.")
    # The settings and the request check their own values (DissectSettings, IngestRequest.validate).
    settings = DissectSettings.for_variant(variant, quantile=quantile, iou_threshold=iou_threshold,
                                           seg_size=seg_size, batch_size=batch_size, workers=workers,
                                           cache_budget=parse_bytes(cache_budget), replicates=replicates,
                                           blocks=blocks)
    request = IngestRequest(model=model, probe=probe, layers=list(layer), settings=settings, arch=arch,
                            checkpoint=checkpoint, random_init=random_init, seed=seed, device=device, split=split,
                            replace=replace, layout=layout, prefix_tokens=prefix_tokens,
                            mean=parse_rgb("--mean", mean), std=parse_rgb("--std", std), tf32=tf32,
                            random_control=random_control, control_seed=control_seed or 0)
    with progress_bars() as progress:
        outcomes = run_ingest(request, progress, warn=lambda message: errors.print(
            f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True), dry_run=dry_run)
    plans = [outcome.plan for outcome in outcomes if outcome.plan]
    if plans:  # the same plan for every layer (of a model): printed once, after what each layer would do
        for outcome in outcomes:
            action = "to dissect" if outcome.status == "planned" else f"already ingested (run {outcome.run_id})"
            console.print(f"{outcome.model or model} {outcome.layer}: {action}{_as_control(outcome, model)}; "
                          f"layout {outcome.layout}", highlight=False, soft_wrap=True)
        for shown in dict.fromkeys(plans):
            console.print(shown, highlight=False, soft_wrap=True)
        return
    for outcome in outcomes:
        if outcome.status == "skipped" and outcome.model not in ("", model):
            console.print(f"{outcome.model} {outcome.layer}: the random-weights control is stored (run "
                          f"{outcome.run_id}); skipped.", highlight=False, soft_wrap=True)
            continue
        if outcome.status == "skipped":
            console.print(f"{model} {outcome.layer}: already ingested with this checkpoint and settings (run "
                          f"{outcome.run_id}); skipped. --replace dissects it again.")
            continue
        top = ", ".join(f"{name} ({count})" for name, count in outcome.top_concepts) or "none"
        console.print(f"{outcome.model or model} {outcome.layer}: {outcome.status} run {outcome.run_id}"
                      f"{_as_control(outcome, model)}: {outcome.units} units, "
                      f"{outcome.interpretable} interpretable (IoU > {iou_threshold}); top concepts: {top}; "
                      f"layout {outcome.layout}; {outcome.seconds:.1f} s", highlight=False, soft_wrap=True)


def _as_control(outcome, model: str) -> str:
    """' (random-weights control)' for an outcome of --random-control's control, else nothing."""
    return " (random-weights control)" if outcome.model not in ("", model) else ""


def _resume(path: Path, replace: bool) -> None:
    from lce.importers.pending_runs import resume

    for item in resume(path, replace=replace or None):
        record = item.record
        interpretable = sum(1 for row in record.units if row.concept and row.iou is not None
                            and row.iou > record.iou_threshold)
        console.print(f"{record.model.name} {record.layer}: {item.outcome.value} run {item.run_id}: "
                      f"{len(record.units)} units, {interpretable} interpretable (IoU > {record.iou_threshold}); "
                      f"from {path}", highlight=False)
    console.print(f"Stored; {path} is deleted.", highlight=False)


def _plan(path: Path, defaults: dict, skip_invalid: bool, shard: str | None, dry_run: bool, executor: str,
          devices: str | None, ray_address: str | None) -> None:
    from lce.ingest.plan import check_plan, parse_shard, read_plan, run_plan, store_pending
    from lce.ingest.executors import check_executor, parse_devices

    device_list = parse_devices(devices)
    check_executor(executor, device_list, ray_address)  # before any model is built: Ray's reach, absent GPUs
    rows = read_plan(path, defaults, shard=parse_shard(shard) if shard is not None else None)
    for pending_file, said in store_pending():  # runs kept when the database went away come first
        console.print(f"{pending_file}: {said}", highlight=False, soft_wrap=True)
    rows = check_plan(rows)
    console.print(f"Plan {path}: {len(rows)} row(s){f' (shard {shard})' if shard else ''}", highlight=False,
                  soft_wrap=True)
    table = Table("line", "model", "layers", "status")
    for row in rows:
        table.add_row(str(row.line), row.model, ";".join(row.layers) or "-", row.status)
    console.print(table, highlight=False)
    invalid = [row for row in rows if row.status == "invalid"]
    for row in invalid:  # below the table, where a long reason is not cut into a narrow column
        console.print(f"line {row.line} ({row.model or 'no model'}) is invalid: {row.reason}", highlight=False,
                      soft_wrap=True)
    invalid_exit = 2 if skip_invalid else 1
    if dry_run:
        raise typer.Exit(invalid_exit if invalid else 0)
    if invalid and not skip_invalid:
        lines = ", ".join(str(row.line) for row in invalid)
        raise LceError(f"Plan {path}: {len(invalid)} invalid row(s) (line {lines}); nothing was dissected. Fix "
                       "them, or pass --skip-invalid to run the others.")

    def report(result) -> None:
        row = result.row
        if result.outcome == "failed":
            errors.print(f"[bold red]failed:[/] line {row.line} {row.model}: {result.reason}", highlight=False,
                         soft_wrap=True)
            return
        for outcome in result.runs:
            console.print(f"{outcome.model or row.model} {outcome.layer}: {outcome.status} run {outcome.run_id}; "
                          f"{outcome.units} units, {outcome.interpretable} interpretable", highlight=False)

    with progress_bars() as progress:
        results = run_plan(rows, progress, warn=lambda message: errors.print(
            f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True), report=report,
            executor=executor, devices=device_list, ray_address=ray_address)
    summary = Table("line", "model", "outcome", "seconds", "where", title="Summary", title_justify="left")
    for result in results:
        seconds = f"{result.seconds:.1f}" if result.outcome in ("stored", "failed") else "-"
        summary.add_row(str(result.row.line), result.row.model, result.outcome, seconds, result.where or "-")
    console.print(summary, highlight=False)
    for result in results:
        if result.reason:
            console.print(f"line {result.row.line} ({result.row.model or 'no model'}) {result.outcome}: "
                          f"{result.reason}", highlight=False, soft_wrap=True)
    if any(result.outcome == "failed" for result in results):
        raise typer.Exit(1)
    if invalid:
        raise typer.Exit(2)

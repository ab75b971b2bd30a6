"""`lce ingest`: dissecting models into the store."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from lce.cli.app import app, console, errors, progress_bars, user_errors
from lce.ingest.request import IngestOptions, prepare_plan
from lce.ingest.resume import resume
from lce.vocabulary import DEFAULT_BLOCKS, DEFAULT_REPLICATES, DEFAULT_VARIANT, IOU_CUTOFF, VARIANTS, one_of

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
    asked = IngestOptions(**locals())  # every option as given, by its name: the first statement, so nothing else
    mode = asked.mode()  # the options' cross-checks (lce.ingest.request)
    if mode == "plan":
        _plan(asked)
    elif mode == "resume":
        _resume(asked.resume, asked.replace)
    else:
        _model(asked)


def _model(asked: IngestOptions) -> None:
    """One model's layers: dissected and stored, or (--dry-run) what would be done and the memory plan."""
    # here: the ingest imports torch, which lce models or lce sql never load
    from lce.ingest.run import ingest as run_ingest

    model = asked.model
    request = asked.request()
    with progress_bars() as progress:
        outcomes = run_ingest(request, progress, warn=_warn, dry_run=asked.dry_run)
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
                      f"{outcome.interpretable} interpretable (IoU > {asked.iou_threshold}); top concepts: {top}; "
                      f"layout {outcome.layout}; {outcome.seconds:.1f} s", highlight=False, soft_wrap=True)


def _warn(message: str) -> None:
    errors.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


def _as_control(outcome, model: str) -> str:
    """' (random-weights control)' for an outcome of --random-control's control, else nothing."""
    return " (random-weights control)" if outcome.model not in ("", model) else ""


def _resume(path: Path, replace: bool) -> None:
    for stored in resume(path, replace):
        record = stored.written.record
        console.print(f"{record.model.name} {record.layer}: {stored.written.outcome.value} run "
                      f"{stored.written.run_id}: {len(record.units)} units, {stored.interpretable} interpretable "
                      f"(IoU > {record.iou_threshold}); from {path}", highlight=False)
    console.print(f"Stored; {path} is deleted.", highlight=False)


def _plan(asked: IngestOptions) -> None:
    """The plan checked and printed, then run (unless --dry-run) and summed up; its exit status (lce.ingest.plan)."""
    # here: the plan's rows run the ingest, which imports torch
    from lce.ingest.plan import exit_code, refuse_invalid, run_plan

    path, shard, skip_invalid = asked.plan, asked.shard, asked.skip_invalid
    plan = prepare_plan(asked, said=lambda pending_file, what: console.print(
        f"{pending_file}: {what}", highlight=False, soft_wrap=True))  # runs kept when the database went away
    rows = plan.rows
    console.print(f"Plan {path}: {len(rows)} row(s){f' (shard {shard})' if shard else ''}", highlight=False,
                  soft_wrap=True)
    table = Table("line", "model", "layers", "status")
    for row in rows:
        table.add_row(str(row.line), row.model, ";".join(row.layers) or "-", row.status)
    console.print(table, highlight=False)
    for row in plan.invalid:  # below the table, where a long reason is not cut into a narrow column
        console.print(f"line {row.line} ({row.model or 'no model'}) is invalid: {row.reason}", highlight=False,
                      soft_wrap=True)
    if asked.dry_run:
        raise typer.Exit(exit_code(rows, skip_invalid))
    refuse_invalid(path, rows, skip_invalid)

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
        results = run_plan(rows, progress, warn=_warn, report=report, executor=asked.executor, devices=plan.devices,
                           ray_address=asked.ray_address)
    summary = Table("line", "model", "outcome", "seconds", "where", title="Summary", title_justify="left")
    for result in results:
        seconds = f"{result.seconds:.1f}" if result.outcome in ("stored", "failed") else "-"
        summary.add_row(str(result.row.line), result.row.model, result.outcome, seconds, result.where or "-")
    console.print(summary, highlight=False)
    for result in results:
        if result.reason:
            console.print(f"line {result.row.line} ({result.row.model or 'no model'}) {result.outcome}: "
                          f"{result.reason}", highlight=False, soft_wrap=True)
    code = exit_code(rows, skip_invalid, results)
    if code:
        raise typer.Exit(code)

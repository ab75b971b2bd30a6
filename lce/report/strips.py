"""Unit strips for dissected runs: each unit's top images with the unit's mask drawn over them, as NetDissect's
reports show them, rendered once into a cache and reused.

    strips = run_strips(DissectedRun.of(row), units=None, device=pick_device("auto"))
    strips.files[7]      # the JPEG of unit 7's strip (in $LCE_HOME/cache/report/<key>/), strips.note if none

The model is rebuilt from the settings the run recorded when it was ingested (architecture, image size, checkpoint
file, random-init seed or a Hugging Face directory's weights, mean and std; never from free text) and run once
over the distinct top images of every unit that lacks a strip, in batches, its layer read with the recorded layout
(nchw, nhwc, or tokens after their prefix). A unit's mask is its activation map upsampled as the run's variant
does and thresholded at the unit's stored threshold; the map is upsampled straight to the tile's size, which
samples the same bilinear surface as the segmentation-size mask more finely (both variants place feature pixel i
at image coordinate (i + 0.5) * image / h). Every recomputed peak is checked against the one stored with the top
image: a rebuilt model that differs from the dissected one (a changed checkpoint file, other code) draws nothing
and says so. A run whose architecture is a package.module:function is rebuilt only when the user named it
(`allowed_archs`, `lce report --allow-arch`): the settings were written by whoever could write runs, and naming code
there must not make another user's report run it (lce.models.build.ModelSpec.recorded); otherwise its strips are
not drawn and the note says why, nothing imported.

The cache key hashes everything a strip depends on (weights, the recorded settings, layer, variant, probe content,
thresholds, top images and the drawing style), so a re-ingested run gets new strips and an unchanged one never
renders twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import text

from lce.config import lce_home, pick_device
from lce.db.connection import connect_reader
from lce.errors import LceError
from lce.home import make_private, private_folder
from lce.probe.broden import Broden
from lce.records import RunIdentity
from lce.resources import read_sql
from lce.vocabulary import TOP_IMAGES

STYLE_VERSION = 1  # bump when the drawing changes: cached strips are then drawn again
DIMMED = 0.3  # brightness outside the mask
OUTLINE = (255, 220, 0)  # the mask's boundary
MISMATCH_SHARE = 0.01  # recomputed peaks allowed to differ from the stored ones (numerics across devices)
THUMBNAIL_BUDGET = 256 * 2**20  # bytes of resized images kept between the forward pass and the drawing
# The run's settings that the masks depend on (besides its checkpoint, layer, variant and top images).
RECORDED = ("architecture", "model_image_size", "random_init", "seed", "mean", "std", "layout", "prefix_tokens",
            "split", "image_size")

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class StripStyle:
    images: int = TOP_IMAGES  # top images per strip (as many as dissection stores)
    tile: int = 96  # largest side of one image in the strip, in pixels (ten make a strip under 1000 px wide)
    gap: int = 2
    quality: int = 85  # JPEG


@dataclass(frozen=True, kw_only=True)
class DissectedRun(RunIdentity):
    """A run, and what drawing its strips needs to know about it besides (the columns of
    sql/queries/report_runs.sql)."""

    architecture: str | None
    checkpoint_sha256: str | None
    settings: dict
    probe_path: str | None
    probe_sha256: str | None

    @classmethod
    def of(cls, row) -> DissectedRun:
        return super().of(row, architecture=row["architecture"], checkpoint_sha256=row["checkpoint_sha256"],
                          settings=dict(row["settings"] or {}), probe_path=row["probe_path"],
                          probe_sha256=row["probe_sha256"])


@dataclass
class RunStrips:
    run_id: int
    files: dict[int, Path] = field(default_factory=dict)  # unit -> strip JPEG in the cache
    rendered: int = 0
    reused: int = 0
    note: str | None = None  # why some or all strips are missing
    seconds: float = 0.0
    directory: Path | None = None


@dataclass(frozen=True)
class _TopImage:
    unit: int
    rank: int
    image: int
    activation: float
    threshold: float
    iou: float | None


class StripsUnavailable(Exception):
    """The run's strips cannot be drawn here (the message says why); the report shows the reason instead."""


def run_strips(run: DissectedRun, units: int | None = None, style: StripStyle = StripStyle(),
               device: str = "auto", batch_size: int = 32, progress: Progress | None = None,
               allowed_archs: tuple[str, ...] = ()) -> RunStrips:
    """The strips of the run's units (the `units` with the highest IoU when given, else all), drawing only those
    the cache lacks. allowed_archs: the package.module:function architectures the user lets the report run."""
    started = time.perf_counter()
    outcome = RunStrips(run.run_id)
    tops = _top_images(run.run_id)
    if not tops:
        outcome.note = "This run stores no top images, so it has no strips."
        return outcome
    wanted = _chosen_units(tops, units)
    directory = lce_home() / "cache" / "report" / _cache_key(run, tops, style)
    outcome.directory = directory
    missing = {unit for unit in wanted if not _strip_path(directory, unit).exists()}
    outcome.reused = len(wanted) - len(missing)
    if missing:
        try:
            outcome.rendered = _render(run, [t for t in tops if t.unit in missing], directory, style, device,
                                       batch_size, progress, allowed_archs)
        except StripsUnavailable as reason:
            outcome.note = f"Strips not drawn: {reason}"
    outcome.files = {unit: _strip_path(directory, unit) for unit in wanted if _strip_path(directory, unit).exists()}
    if units is not None and len(wanted) < len({t.unit for t in tops}) and outcome.note is None:
        outcome.note = f"Strips of the {len(wanted)} units with the highest IoU (--units {units})."
    outcome.seconds = time.perf_counter() - started
    return outcome


def _top_images(run_id: int) -> list[_TopImage]:
    with connect_reader(required=False).connect() as conn:
        rows = conn.execute(text(read_sql("queries/run_top_images")), {"run": run_id}).mappings().all()
    return [_TopImage(r["unit"], r["rank"], r["image"], r["activation"], r["threshold"], r["iou"]) for r in rows
            if r["threshold"] is not None]


def _chosen_units(tops: list[_TopImage], units: int | None) -> list[int]:
    """Every unit with top images, or the `units` of them with the highest IoU (in unit order)."""
    iou = {t.unit: t.iou for t in tops}
    every = sorted(iou)
    if units is None or units >= len(every):
        return every
    ranked = sorted(every, key=lambda u: (iou[u] is None, -(iou[u] or 0.0), u))
    return sorted(ranked[:max(units, 0)])


def _strip_path(directory: Path, unit: int) -> Path:
    return directory / f"unit-{unit:05d}.jpg"


def _cache_key(run: DissectedRun, tops: list[_TopImage], style: StripStyle) -> str:
    digest = hashlib.sha256()
    recorded = {key: run.settings.get(key) for key in RECORDED}
    identity = {
        "style_version": STYLE_VERSION, "style": asdict(style), "architecture": run.architecture,
        "checkpoint": run.checkpoint_sha256, "layer": run.layer, "variant": run.variant, "seg_size": run.seg_size,
        "probe": run.settings.get("probe_sha256") or run.probe_sha256, "recorded": recorded,
    }
    digest.update(json.dumps(identity, sort_keys=True).encode())
    for top in tops:
        digest.update(f"{top.unit},{top.rank},{top.image},{top.activation!r},{top.threshold!r};".encode())
    return digest.hexdigest()[:24]


def _render(run: DissectedRun, tops: list[_TopImage], directory: Path, style: StripStyle, device: str,
            batch_size: int, progress: Progress | None, allowed_archs: tuple[str, ...] = ()) -> int:
    """Mask the top images of `tops` (up to style.images per unit), draw and write the strips; returns how many
    were written."""
    shown = [t for t in tops if t.rank < style.images]
    masked = _MaskPass(run, shown, style.tile, device, batch_size, progress, allowed_archs=allowed_archs)
    private_folder(directory)  # the strips themselves keep the umask's mode: the report hard-links them (lce/home.py)
    _write_manifest(directory, run)
    per_unit: dict[int, list[int]] = {}
    for position in sorted(range(len(shown)), key=lambda p: (shown[p].unit, shown[p].rank)):
        per_unit.setdefault(shown[position].unit, []).append(position)
    for unit, positions in per_unit.items():
        tiles = [overlay(masked.thumbnails.get(shown[p].image), masked.mask(p)) for p in positions]
        _write_strip(_strip_path(directory, unit), tiles, style)
    return len(per_unit)


def unit_masks(run: DissectedRun, unit: int, size: int | None = None, device: str = "auto",
               allowed_archs: tuple[str, ...] = ()) -> np.ndarray:
    """(k, size, size) bool: the unit's masks over its top images, strongest first, at `size` (default: the run's
    segmentation size, where the masks are the ones dissection tallied). allowed_archs: as for run_strips."""
    tops = [t for t in _top_images(run.run_id) if t.unit == unit]
    if not tops:
        raise LceError(f"Run {run.run_id} stores no top images for unit {unit}.")
    try:
        masked = _MaskPass(run, tops, size or run.seg_size, device, batch_size=len(tops), thumbnails=False,
                           allowed_archs=allowed_archs)
    except StripsUnavailable as reason:
        raise LceError(f"The masks of run {run.run_id} cannot be computed: {reason}") from None
    return np.stack([masked.mask(p) for p in range(len(tops))])


class _MaskPass:
    """The rebuilt model, run once over the distinct images of `tops` in batches: each top image's mask at
    `size` (at most the probe's image size), kept packed, and (unless thumbnails=False) the images resized to it.
    StripsUnavailable when the model or probe cannot be had again, or when the recomputed peaks differ from the
    stored ones."""

    def __init__(self, run: DissectedRun, tops: list[_TopImage], size: int, device: str, batch_size: int,
                 progress: Progress | None = None, thumbnails: bool = True, allowed_archs: tuple[str, ...] = ()):
        # torch and the models load here, when strips are drawn: a report without them does not import torch.
        import torch

        from lce.dissect.upsample import upsample
        from lce.models.layers import LayerCapture
        from lce.probe.dataset import ProbeDataset

        spec = _recorded_model(run, allowed_archs)  # before anything else: a refused architecture costs nothing
        probe, image_size = _open_probe(run)
        loaded = _rebuild_model(run, spec)
        layout = _recorded_layout(run)
        dataset = ProbeDataset(probe, image_size=image_size, seg_size=run.seg_size, mean=loaded.mean,
                               std=loaded.std, uint8=True)
        target = pick_device(device)
        model = loaded.module.to(target).eval()
        self.size = min(size, image_size)
        self.thumbnails = _Thumbnails(dataset, self.size, keep=thumbnails)
        self._packed: list[np.ndarray | None] = [None] * len(tops)
        peaks = np.zeros(len(tops))
        images = sorted({t.image for t in tops})
        by_image: dict[int, list[int]] = {}
        for position, top in enumerate(tops):
            by_image.setdefault(top.image, []).append(position)
        last_unit = max(t.unit for t in tops)
        try:
            with LayerCapture(model, [run.layer], {run.layer: layout}) as capture, torch.inference_mode():
                for start in range(0, len(images), batch_size):
                    batch = images[start:start + batch_size]
                    pixels = torch.stack([dataset.image(i) for i in batch])
                    self.thumbnails.add(batch, pixels)
                    model(dataset.normalize(pixels.to(target)))
                    acts = capture.outputs[run.layer].float()
                    if acts.shape[1] <= last_unit:
                        raise LceError(f"it has {acts.shape[1]} units, fewer than the run stores.")
                    positions = [p for i in batch for p in by_image[i]]
                    rows = torch.tensor([batch.index(tops[p].image) for p in positions], device=acts.device)
                    units = torch.tensor([tops[p].unit for p in positions], device=acts.device)
                    limits = torch.tensor([tops[p].threshold for p in positions], dtype=acts.dtype,
                                          device=acts.device)
                    maps = acts[rows, units]  # (P, h, w): one map per top image
                    peaks[positions] = maps.amax(dim=(1, 2)).double().cpu().numpy()
                    # The maps as channels of one image, as the engine upsamples them.
                    masks = (upsample(maps[None], self.size, run.variant)[0] > limits[:, None, None]).cpu().numpy()
                    for position, mask in zip(positions, masks):
                        self._packed[position] = np.packbits(mask, axis=None)
                    if progress:
                        progress(f"strips run {run.run_id}", min(start + batch_size, len(images)), len(images))
        except LceError as error:  # code changed since the ingest: the layer is gone or reads otherwise
            raise StripsUnavailable(f"the rebuilt model's layer {run.layer} cannot be read as it was dissected: "
                                    f"{error}") from None
        stored = np.array([t.activation for t in tops])
        scale = float(np.abs(stored).max(initial=0.0)) or 1.0
        wrong = ~np.isclose(peaks, stored, rtol=1e-2, atol=1e-3 * scale)
        if wrong.mean() > MISMATCH_SHARE:
            raise StripsUnavailable(
                f"the rebuilt model ({loaded.description}) does not reproduce the activations stored with run "
                f"{run.run_id}'s top images ({int(wrong.sum())} of {len(tops)} peaks differ): the weights or the "
                "code changed since the run was dissected.")

    def mask(self, position: int) -> np.ndarray:
        """The mask of tops[position], (size, size) bool."""
        bits = np.unpackbits(self._packed[position], count=self.size * self.size)
        return bits.reshape(self.size, self.size).astype(bool)


def _open_probe(run: DissectedRun):
    """(Broden, image size) of the run's probe, as it was dissected."""
    if not run.probe_path or not Path(run.probe_path).is_dir():
        raise StripsUnavailable(f"the probe's directory {run.probe_path} is gone.")
    try:
        probe = Broden.open(Path(run.probe_path), split=run.settings.get("split", "all"))
    except LceError as error:
        raise StripsUnavailable(f"the probe at {run.probe_path} cannot be read ({error}).") from None
    dissected = run.settings.get("probe_sha256")
    if dissected and probe.content_sha256() != dissected:
        raise StripsUnavailable(f"the probe at {run.probe_path} has changed since the run was dissected, so its "
                                "stored top images no longer name the same pictures.")
    return probe, run.settings.get("image_size") or probe.rows[0].ih


def _recorded_model(run: DissectedRun, allowed_archs: tuple[str, ...]):
    """How lce ingest built the run's model, from the settings the run recorded (lce.models.build.ModelSpec; runs of
    an older lce got them from migration 0007); StripsUnavailable, with nothing imported, for a package.module:function
    the user did not allow."""
    from lce.models.build import ArchitectureNotAllowed, ModelSpec  # torch: only when strips are drawn

    architecture = run.settings.get("architecture")
    if not architecture:
        raise StripsUnavailable("the run does not record the model's architecture.")
    if not isinstance(architecture, str):
        raise StripsUnavailable(f"the recorded architecture is a {type(architecture).__name__}, not a name.")
    try:
        return ModelSpec.recorded(run.settings, allowed=allowed_archs)
    except ArchitectureNotAllowed as refused:
        raise StripsUnavailable(str(refused)) from None
    except LceError as error:
        raise StripsUnavailable(f"the recorded architecture cannot be read: {error}") from None


def _rebuild_model(run: DissectedRun, spec):
    """The model of `spec` (_recorded_model) as lce ingest built it: the architecture at the image size it was made
    for, with the checkpoint file, the random-init seed or the Hugging Face directory's own weights, and the mean
    and std exactly as recorded (none: [0, 1] inputs)."""
    from lce.models.sources import parse_arch  # torch and torchvision: only when strips are drawn

    try:
        source = parse_arch(spec.architecture)
    except LceError as error:
        raise StripsUnavailable(f"the recorded architecture cannot be read: {error}") from None
    if source.kind == "hf" and not Path(source.name).is_dir():
        raise StripsUnavailable(f"the model's directory {source.name} is gone (the model cannot be run again).")
    if source.kind != "hf" and spec.checkpoint is None and run.checkpoint_sha256 is not None:
        raise StripsUnavailable("the run does not record where its checkpoint file was.")
    if spec.checkpoint is not None and not spec.checkpoint.is_file():
        raise StripsUnavailable(f"the checkpoint file {spec.checkpoint} is gone (the model cannot be run again).")
    try:
        loaded = spec.build()
    except LceError as error:
        raise StripsUnavailable(f"the model cannot be built again: {error}") from None
    if loaded.checkpoint_sha256 != run.checkpoint_sha256:
        weights = f"the weights in {source.name} are" if source.kind == "hf" else f"the file {spec.checkpoint} is"
        raise StripsUnavailable(f"{weights} no longer the checkpoint that was dissected (the SHA-256 differs).")
    return loaded


def _recorded_layout(run: DissectedRun):
    """How the layer's output holds its units, as the run recorded it; nchw for runs of an older lce, which read
    every layer so."""
    from lce.models.layout import MapLayout  # torch: only when strips are drawn

    try:
        return MapLayout(run.settings.get("layout", "nchw"), run.settings.get("prefix_tokens") or 0)
    except LceError as error:
        raise StripsUnavailable(f"the run's recorded layout cannot be read: {error}") from None


class _Thumbnails:
    """Probe images resized to the tile, kept from the forward pass up to THUMBNAIL_BUDGET bytes (least recently
    used out first) and decoded again when needed after that."""

    def __init__(self, dataset, tile: int, keep: bool = True):
        self.dataset = dataset
        self.tile = tile
        self.keep = keep
        self.kept: OrderedDict[int, np.ndarray] = OrderedDict()
        self.limit = max(1, THUMBNAIL_BUDGET // (tile * tile * 3))

    def add(self, indices: list[int], pixels) -> None:
        if not self.keep:
            return
        for index, thumbnail in zip(indices, self._resize(pixels)):
            self._keep(index, thumbnail)

    def get(self, index: int) -> np.ndarray:
        if index in self.kept:
            self.kept.move_to_end(index)
            return self.kept[index]
        thumbnail = self._resize(self.dataset.image(index)[None])[0]
        self._keep(index, thumbnail)
        return thumbnail

    def _keep(self, index: int, thumbnail: np.ndarray) -> None:
        self.kept[index] = thumbnail
        self.kept.move_to_end(index)
        while len(self.kept) > self.limit:
            self.kept.popitem(last=False)

    def _resize(self, pixels) -> np.ndarray:
        """(B, 3, H, W) uint8 to (B, tile, tile, 3) uint8, antialiased."""
        import torch.nn.functional as F

        if pixels.shape[-1] != self.tile:
            pixels = F.interpolate(pixels.float(), size=(self.tile, self.tile), mode="bilinear", antialias=True,
                                   align_corners=False).round().clamp(0, 255).byte()
        return pixels.permute(0, 2, 3, 1).contiguous().numpy()


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The image (H, W, 3 uint8) dimmed outside the mask (H, W bool), with the mask's boundary outlined."""
    out = np.where(mask[..., None], image, (image * DIMMED).astype(np.uint8))
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    out[mask & ~interior] = OUTLINE
    return out


def _write_strip(path: Path, tiles: list[np.ndarray], style: StripStyle) -> None:
    from PIL import Image

    tile = tiles[0].shape[0]
    strip = np.full((tile, len(tiles) * (tile + style.gap) - style.gap, 3), 255, dtype=np.uint8)
    for k, picture in enumerate(tiles):
        strip[:, k * (tile + style.gap):k * (tile + style.gap) + tile] = picture
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    Image.fromarray(strip).save(partial, format="JPEG", quality=style.quality)
    os.replace(partial, path)  # atomic: a concurrent report never reads half a file


def _write_manifest(directory: Path, run: DissectedRun) -> None:
    manifest = directory / "strips.json"
    if not manifest.exists():
        manifest.write_text(json.dumps({"model": run.model, "layer": run.layer, "variant": run.variant,
                                        "run_id": run.run_id, "checkpoint_sha256": run.checkpoint_sha256},
                                       indent=1) + "\n")
        make_private(manifest)

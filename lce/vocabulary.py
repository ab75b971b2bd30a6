"""The method's vocabulary: the published variants of network dissection, the IoU cut-off, the categories and the
method's other constants (histogram bins, top images, bootstrap defaults).

    spec = variant("netdissect")                      # an LceError naming the known variants otherwise
    spec.quantile, spec.seg_size(224, 112)             # 0.005, 112
    [spec.name for spec in VARIANTS]                  # ["netdissect", "dissect"]

Each variant is data (docs/method.md section 1, the two variants): the engine, the upsampler, the tally, the importers, the
schema's CHECK on run.variant and the command line's help all ask it, and none compares variant names. Adding a
variant here also needs a migration for that CHECK (and run.variant's comment, which `alembic check` compares).
It imports only lce.errors (no torch, no numpy), so every layer may import it: the command line's defaults, the
schema, the SQL's category order (tests/test_vocabulary_constants.py) and the benches take their constants from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from lce.errors import LceError

DEFAULT_VARIANT = "dissect"  # the LCE paper's (davidbau/dissect)

# Every published tool calls a unit interpretable when its best IoU exceeds 0.04 (docs/method.md section 1).
IOU_CUTOFF = 0.04

# Broden's six categories (docs/method.md section 2), in the order lce lists them: the pixel categories, then the
# whole-image ones. Broden's index.csv puts color first (lce.probe.synth writes that order).
CATEGORIES = ("object", "part", "material", "color", "scene", "texture")

# Images kept per unit, strongest first (run_top_images, the report's strips), as NetDissect-Lite's TOPN.
TOP_IMAGES = 10

# Bins of each unit's histogram when its values outgrow the exact threshold (lce.dissect.threshold.Histogram); the
# share above T_u then lands within 1% (relative) of q (tests/test_dissect_threshold.py).
HISTOGRAM_BINS = 8192

# The block bootstrap (lce.dissect.uncertainty, issue 16): at least 100 blocks of images, 1,000 replicates.
DEFAULT_BLOCKS = 100
DEFAULT_REPLICATES = 1000

# Upsampling grids (lce.dissect.upsample). CLAMPED: half-pixel centres and clamped edges (F.interpolate,
# align_corners=False, as PIL's resize in NetDissect-Lite). ZERO_PADDED: davidbau/dissect's grid, feature pixel i
# at target coordinate i*s + (s-1)/2 with s = S/h, fading towards zero beyond the outer feature centres.
CLAMPED = "clamped"
ZERO_PADDED = "zero-padded"
GRIDS = (CLAMPED, ZERO_PADDED)


@dataclass(frozen=True)
class Variant:
    """One published variant: how T_u, M_u, the tally and the label are taken (docs/method.md section 1)."""

    name: str  # as stored in run.variant
    description: str  # one line, for --help
    quantile: float  # q: T_u is the top-q quantile of the unit's values
    threshold_upsampled: bool  # T_u over the upsampled values (else over the raw activations)
    seg_divisor: int | None  # S = image side // seg_divisor; None: the probe's own segmentation size (sh)
    upsampling: str  # CLAMPED or ZERO_PADDED
    activation_per_category: bool  # A[u, k] counts M_u only in images that annotate category k (else A[u], all)
    label_per_category: bool  # best concept per category, then the best category (else best over all at once)
    iou_cutoff: float = IOU_CUTOFF

    def seg_size(self, image_size: int, probe_seg_size: int) -> int:
        """The segmentation size S for a probe of `image_size`-pixel images and `probe_seg_size` label maps."""
        return probe_seg_size if self.seg_divisor is None else image_size // self.seg_divisor

    @property
    def seg_size_rule(self) -> str:
        """The default S in words, for --help."""
        if self.seg_divisor is None:
            return "the probe's own"
        return f"{self.seg_size(224, 0)} for 224-px images"

    @property
    def summary(self) -> str:
        """Its quantile and cut-off in words, for --help: 'top-1% quantile, IoU cut-off 0.04'."""
        return f"top-{self.quantile * 100:g}% quantile, IoU cut-off {self.iou_cutoff:g}"


VARIANTS = (
    # NetDissect (Bau et al. CVPR 2017) and NetDissect-Lite: top 0.5% of the raw activations, Broden's own label
    # maps (112 x 112 for 224-pixel images), A only over images that annotate the concept's category.
    Variant(name="netdissect", description="Bau et al. CVPR 2017: NetDissect, NetDissect-Lite", quantile=0.005,
            threshold_upsampled=False, seg_divisor=None, upsampling=CLAMPED, activation_per_category=True,
            label_per_category=True),
    # davidbau/dissect (Bau et al. PNAS 2020), as the LCE paper used it: top 1% of the activations upsampled to
    # 56 x 56 for 224-pixel images, A over every pixel.
    Variant(name="dissect", description="Bau et al. PNAS 2020: davidbau/dissect, the LCE paper", quantile=0.01,
            threshold_upsampled=True, seg_divisor=4, upsampling=ZERO_PADDED, activation_per_category=False,
            label_per_category=False),
)
NAMES = tuple(spec.name for spec in VARIANTS)
_BY_NAME = {spec.name: spec for spec in VARIANTS}


def variant(name: str | Variant) -> Variant:
    """The registered variant called `name` (a Variant is returned as it is)."""
    if isinstance(name, Variant):
        return name
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise LceError(f"Unknown variant {name!r}; lce knows {', '.join(NAMES)}.") from None


def one_of(names: tuple[str, ...] = NAMES) -> str:
    """'a, b or c', for --help."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"

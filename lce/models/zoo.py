"""The models of the LCE paper (method.md section 4), by name.

    entry = zoo_entry("moco-v2")      # ZooEntry(architecture='resnet50', layer='layer4', layout='moco', ...)
    model = build_zoo_model(entry, Path("moco_v2_800ep_pretrain.pth.tar"))   # lce.models.build

An entry says how to build and feed a model; the user brings the checkpoint file (lce never downloads).
`layout` is the layout of the checkpoint as its authors released it; the loader recognises every layout on its own,
so the torchvision-format files of Ericsson et al.'s ssl-transfer load for every entry too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lce.errors import LceError


@dataclass(frozen=True)
class Normalization:
    """Per-channel input normalisation, (x - mean) / std on RGB images scaled to [0, 1]."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def apply(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise a (B, 3, H, W) batch in [0, 1]."""
        mean = torch.tensor(self.mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std


# The ImageNet statistics every torchvision classification model (and every ResNet-50 of the paper but SimCLR) uses.
IMAGENET = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@dataclass(frozen=True)
class ZooEntry:
    """One model of the paper.

    name: lce's name ("moco-v2"); title: as papers print it ("MoCo-v2"); paper_name: the model column of Mustapha
    et al.'s CSV ("MoCoV2"; the CSV appends "(R)" for ResNet). layout: a name in lce.models.checkpoints.LAYOUTS,
    None for the random control (built from a seed, no checkpoint). normalization: None for models that expect
    [0, 1] inputs as they are.
    """

    name: str
    title: str
    paper_name: str
    family: str
    architecture: str
    layer: str
    layout: str | None
    normalization: Normalization | None
    note: str


def _entry(name: str, title: str, paper_name: str, family: str, layout: str | None, note: str,
           normalization: Normalization | None = IMAGENET) -> ZooEntry:
    # Every model of the paper is a ResNet-50 trained on ImageNet-1k, dissected at layer4 (method.md section 4).
    return ZooEntry(name=name, title=title, paper_name=paper_name, family=family, architecture="resnet50",
                    layer="layer4", layout=layout, normalization=normalization, note=note)


# The 13 models of Ericsson et al. (CVPR 2021), then the paper's controls: SeLa-v1, supervised and random.
_ENTRIES = (
    _entry("insdis", "InsDis", "InsDis", "contrastive", "npid",
           "Wu et al. CVPR 2018, instance discrimination with a memory bank (zhirongw/lemniscate.pytorch)."),
    _entry("moco-v1", "MoCo-v1", "MoCoV1", "contrastive", "moco",
           "He et al. CVPR 2020, 200 epochs (facebookresearch/moco, moco_v1_200ep_pretrain.pth.tar)."),
    _entry("pcl-v1", "PCL-v1", "PCLV1", "contrastive", "moco",
           "Li et al. ICLR 2021, prototypical contrastive learning (salesforce/PCL, PCL_v1_epoch200.pth.tar)."),
    _entry("pirl", "PIRL", "PIRL", "contrastive", "pycontrast",
           "Misra & van der Maaten CVPR 2020, as re-trained in HobbitLong/PyContrast (PIRL.pth)."),
    _entry("pcl-v2", "PCL-v2", "PCLV2", "contrastive", "moco",
           "Li et al. ICLR 2021, v2 with MLP head and augmentation (salesforce/PCL, PCL_v2_epoch200.pth.tar)."),
    _entry("simclr-v1", "SimCLR-v1", "SimCLRV1", "contrastive", "torchvision",
           "Chen et al. ICML 2020, 1x width, converted from TensorFlow (google-research/simclr via ssl-transfer); "
           "expects [0, 1] inputs without mean/std.", normalization=None),
    _entry("moco-v2", "MoCo-v2", "MoCoV2", "contrastive", "moco",
           "Chen et al. arXiv 2003.04297, 800 epochs (facebookresearch/moco, moco_v2_800ep_pretrain.pth.tar)."),
    _entry("simclr-v2", "SimCLR-v2", "SimCLRV2", "contrastive", "torchvision",
           "Chen et al. NeurIPS 2020, r50_1x_sk0, converted from TensorFlow (google-research/simclr via "
           "ssl-transfer); expects [0, 1] inputs without mean/std.", normalization=None),
    _entry("sela-v2", "SeLa-v2", "SeLaV2", "clustering", "swav",
           "Asano et al. ICLR 2020, v2 with SwAV's training recipe (facebookresearch/swav, selav2_400ep_pretrain)."),
    _entry("infomin", "InfoMin", "InfoMin", "contrastive", "pycontrast",
           "Tian et al. NeurIPS 2020, 800 epochs (HobbitLong/PyContrast, InfoMin_800.pth)."),
    _entry("byol", "BYOL", "BYOL", "self-distillation", "torchvision",
           "Grill et al. NeurIPS 2020, converted from JAX (deepmind/deepmind-research via ssl-transfer)."),
    _entry("deepcluster-v2", "DeepCluster-v2", "DeepClusterV2", "clustering", "swav",
           "Caron et al. ECCV 2018, v2 with SwAV's recipe (facebookresearch/swav, deepclusterv2_800ep_pretrain)."),
    _entry("swav", "SwAV", "SwAV", "clustering", "swav",
           "Caron et al. NeurIPS 2020, 800 epochs, multi-crop (facebookresearch/swav, swav_800ep_pretrain)."),
    _entry("sela-v1", "SeLa-v1", "SeLaV1", "clustering", "npid",
           "Asano et al. ICLR 2020, self-labelling via optimal transport (yukimasano/self-label)."),
    _entry("supervised", "Supervised", "Supervised", "supervised", "torchvision",
           "ImageNet-supervised ResNet-50 in torchvision's format (e.g. torchvision's IMAGENET1K_V1 file, "
           "brought by the user)."),
    _entry("random", "Random", "Random", "random", None,
           "Control: torchvision's random initialisation from a seed, no checkpoint."),
)
_BY_NAME = {entry.name: entry for entry in _ENTRIES}


def zoo_entries() -> tuple[ZooEntry, ...]:
    """Every entry, in the paper's order."""
    return _ENTRIES


def zoo_entry(name: str) -> ZooEntry:
    """The entry called `name` (case-insensitive); LceError listing the known names otherwise."""
    entry = _BY_NAME.get(name.strip().lower())
    if entry is None:
        raise LceError(f"{name!r} is not a model of the zoo; the known ones are {', '.join(_BY_NAME)}.")
    return entry

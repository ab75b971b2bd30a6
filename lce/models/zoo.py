"""The models lce knows by name: the LCE paper's ResNet-50s (docs/method.md section 4), then self-supervised ViTs.

    entry = zoo_entry("moco-v2")      # ZooEntry(architecture='resnet50', layer='layer4', layout='moco', ...)
    model = build_zoo_model(entry, Path("moco_v2_800ep_pretrain.pth.tar"))   # lce.models.build
    zoo_entry("dinov2-vits14").architecture   # 'timm:vit_small_patch14_dinov2', read at blocks.11

An entry says how to build and feed a model; the user brings the checkpoint file (lce never downloads).
`layout` is the layout of the checkpoint as its authors released it; the loader recognises every layout on its own,
so the torchvision-format files of Ericsson et al.'s ssl-transfer load for every ResNet-50 entry too, and a ViT
entry's architecture (timm's) converts its release's key names (lce.models.sources).
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
# OpenAI CLIP's image statistics (openai/CLIP clip.py, _transform).
CLIP = Normalization(mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))
_NAMED = {IMAGENET: "ImageNet mean/std", CLIP: "CLIP mean/std"}


def normalization_name(normalization: Normalization | None) -> str:
    """A short name for tables: "ImageNet mean/std", "CLIP mean/std", "none ([0, 1])", or the numbers."""
    if normalization is None:
        return "none ([0, 1])"
    return _NAMED.get(normalization) or f"mean {normalization.mean}, std {normalization.std}"


@dataclass(frozen=True)
class ZooEntry:
    """One model lce knows by name.

    name: lce's name ("moco-v2"); title: as papers print it ("MoCo-v2"); paper_name: the model column of Mustapha
    et al.'s CSV ("MoCoV2"; the CSV appends "(R)" for ResNet), the title for models not in the paper.
    architecture: an --arch spec ("resnet50", "timm:vit_small_patch16_224"); layer: the one dissected by default.
    layout: a name in lce.models.checkpoints.LAYOUTS, None for the random control (built from a seed, no
    checkpoint). normalization: None for models that expect [0, 1] inputs as they are. in_paper: one of the
    paper's 16 ResNet-50s (docs/method.md section 4).
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
    in_paper: bool


def _entry(name: str, title: str, paper_name: str, family: str, layout: str | None, note: str,
           normalization: Normalization | None = IMAGENET) -> ZooEntry:
    # Every model of the paper is a ResNet-50 trained on ImageNet-1k, dissected at layer4 (docs/method.md section 4).
    return ZooEntry(name=name, title=title, paper_name=paper_name, family=family, architecture="resnet50",
                    layer="layer4", layout=layout, normalization=normalization, note=note, in_paper=True)


def _vit(name: str, title: str, family: str, architecture: str, layout: str, note: str,
         normalization: Normalization = IMAGENET) -> ZooEntry:
    # The ViTs have 12 blocks; the last one's output, as the paper's layer4 is the last stage of a ResNet-50.
    return ZooEntry(name=name, title=title, paper_name=title, family=family, architecture=architecture,
                    layer="blocks.11", layout=layout, normalization=normalization, note=note, in_paper=False)


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
    # Not in the paper: self-supervised ViTs (and a supervised and a language-supervised one to compare them with),
    # each in its official release's layout; timm builds them at the probe's size, resampling position embeddings.
    _vit("dino-vits16", "DINO ViT-S/16", "self-distillation", "timm:vit_small_patch16_224", "dino",
         "Caron et al. ICCV 2021, the teacher's backbone (facebookresearch/dino, dino_deitsmall16_pretrain.pth, "
         "or the full training checkpoint dino_deitsmall16_pretrain_full_checkpoint.pth)."),
    _vit("dino-vitb16", "DINO ViT-B/16", "self-distillation", "timm:vit_base_patch16_224", "dino",
         "Caron et al. ICCV 2021, the teacher's backbone (facebookresearch/dino, dino_vitbase16_pretrain.pth, "
         "or the full training checkpoint dino_vitbase16_pretrain_full_checkpoint.pth)."),
    _vit("dinov2-vits14", "DINOv2 ViT-S/14", "self-distillation", "timm:vit_small_patch14_dinov2", "dinov2",
         "Oquab et al. TMLR 2024, distilled from ViT-g/14, trained at 518 px (facebookresearch/dinov2, "
         "dinov2_vits14_pretrain.pth)."),
    _vit("dinov2-vits14-reg", "DINOv2 ViT-S/14 with registers", "self-distillation",
         "timm:vit_small_patch14_reg4_dinov2", "dinov2",
         "Darcet et al. ICLR 2024, 4 register tokens, trained at 518 px (facebookresearch/dinov2, "
         "dinov2_vits14_reg4_pretrain.pth)."),
    _vit("mae-vitb16", "MAE ViT-B/16", "masked-image-modeling", "timm:vit_base_patch16_224", "deit",
         "He et al. CVPR 2022, pre-trained encoder, not fine-tuned (facebookresearch/mae, mae_pretrain_vit_base.pth)."),
    _vit("deit-s", "DeiT-S", "supervised", "timm:deit_small_patch16_224", "deit",
         "Touvron et al. ICML 2021, ImageNet-supervised ViT-S/16, no distillation token (facebookresearch/deit, "
         "deit_small_patch16_224-cd65a155.pth)."),
    _vit("clip-vitb16", "CLIP ViT-B/16", "language-supervised", "timm:vit_base_patch16_clip_quickgelu_224", "clip",
         "Radford et al. ICML 2021, the image tower (openai/CLIP's ViT-B-16.pt is a TorchScript archive: pass its "
         "state dict, torch.save(torch.jit.load('ViT-B-16.pt', map_location='cpu').state_dict(), file)); QuickGELU "
         "as trained.", normalization=CLIP),
)
_BY_NAME = {entry.name: entry for entry in _ENTRIES}


def zoo_entries() -> tuple[ZooEntry, ...]:
    """Every entry: the paper's, in its order (in_paper), then the others."""
    return _ENTRIES


def zoo_entry(name: str) -> ZooEntry:
    """The entry called `name` (case-insensitive); LceError listing the known names otherwise."""
    entry = _BY_NAME.get(name.strip().lower())
    if entry is None:
        raise LceError(f"{name!r} is not a model of the zoo; the known ones are {', '.join(_BY_NAME)}.")
    return entry

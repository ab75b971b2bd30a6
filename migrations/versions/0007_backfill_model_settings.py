"""run.settings: how the model of a dissected run was made, backfilled for runs stored before lce recorded it
(architecture, source, zoo entry, mean and std, random init and seed), from the model row and its notes, as lce
report rebuilt them; no schema change

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from alembic import op


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


MARKER = 'backfilled by migration 0007 from the model row'
IMAGENET_MEAN = '[0.485, 0.456, 0.406]'
IMAGENET_STD = '[0.229, 0.224, 0.225]'
# The zoo of lce 0.1.0 (the paper's ResNet-50s), frozen here as it was: a model named after an entry whose notes
# start with the entry's title was built from it; SimCLR's two expect [0, 1] inputs (no mean/std).
ZOO = [
    ('insdis', 'InsDis', True), ('moco-v1', 'MoCo-v1', True), ('pcl-v1', 'PCL-v1', True), ('pirl', 'PIRL', True),
    ('pcl-v2', 'PCL-v2', True), ('simclr-v1', 'SimCLR-v1', False), ('moco-v2', 'MoCo-v2', True),
    ('simclr-v2', 'SimCLR-v2', False), ('sela-v2', 'SeLa-v2', True), ('infomin', 'InfoMin', True),
    ('byol', 'BYOL', True), ('deepcluster-v2', 'DeepCluster-v2', True), ('swav', 'SwAV', True),
    ('sela-v1', 'SeLa-v1', True), ('supervised', 'Supervised', True), ('random', 'Random', True),
]
KEYS = ['architecture', 'source', 'zoo', 'model_image_size', 'mean', 'std', 'normalization_source']


def upgrade() -> None:
    zoo = ', '.join(f"('{name}', '{title}', {str(normalized).lower()})" for name, title, normalized in ZOO)
    op.execute(f"""
        UPDATE run r SET settings = r.settings || jsonb_build_object(
            'architecture', CASE WHEN z.name IS NOT NULL THEN 'resnet50' ELSE m.architecture END,
            'source', CASE WHEN z.name IS NULL AND m.architecture LIKE '%:%' THEN 'function' ELSE 'torchvision' END,
            'zoo', z.name,
            'model_image_size', NULL,
            'mean', CASE WHEN z.normalized IS FALSE THEN NULL ELSE '{IMAGENET_MEAN}'::jsonb END,
            'std', CASE WHEN z.normalized IS FALSE THEN NULL ELSE '{IMAGENET_STD}'::jsonb END,
            'normalization_source', '{MARKER}',
            'random_init', r.checkpoint_sha256 IS NULL,
            'seed', CASE WHEN r.checkpoint_sha256 IS NOT NULL THEN NULL
                         WHEN jsonb_typeof(r.settings -> 'seed') = 'number' THEN r.settings -> 'seed'
                         ELSE '0'::jsonb END)
        FROM model m LEFT JOIN (VALUES {zoo}) AS z (name, title, normalized)
            ON m.name = z.name AND m.notes LIKE z.title || ': %'
        WHERE r.model_id = m.id AND r.source = 'dissected' AND NOT r.settings ? 'architecture'
    """)


def downgrade() -> None:
    # random_init and seed were recorded before (as the command's flag); they are left as they are now.
    removed = ' - '.join(f"'{key}'" for key in KEYS)
    op.execute(f"UPDATE run SET settings = settings - {removed} WHERE settings ->> 'normalization_source' = '{MARKER}'")

"""concept: primary category, frequency, coverage; probe: images per category (Broden probes)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column('probe', sa.Column('category_images', postgresql.JSONB(astext_type=sa.Text()), nullable=True, comment='images annotating each category'))
    op.add_column('concept', sa.Column('primary_category', sa.Text(), nullable=True, comment='the category the label occurs in most (label.csv); NULL for imports'))
    op.add_column('concept', sa.Column('frequency', sa.Integer(), nullable=True, comment='images with this label in this category'))
    op.add_column('concept', sa.Column('coverage', sa.Double(), nullable=True, comment="mean fraction of those images' pixels it covers"))
    op.create_index(op.f('ix_concept_probe_id_number'), 'concept', ['probe_id', 'number'], unique=False)
    op.create_check_constraint(
        op.f('ck_concept_primary_category'), 'concept',
        "primary_category IN ('object', 'part', 'material', 'color', 'scene', 'texture')",
    )


def downgrade() -> None:
    op.drop_constraint(op.f('ck_concept_primary_category'), 'concept', type_='check')
    op.drop_index(op.f('ix_concept_probe_id_number'), table_name='concept')
    op.drop_column('concept', 'coverage')
    op.drop_column('concept', 'frequency')
    op.drop_column('concept', 'primary_category')
    op.drop_column('probe', 'category_images')

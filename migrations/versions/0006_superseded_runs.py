"""run: superseded_at, superseded_by (replaced runs kept for the embeddings that use them); the identity is unique
among current runs only; views unit_label (and those on it) and unit_category_label leave superseded runs out

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from alembic import op
import sqlalchemy as sa

from lce.db import views


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


IDENTITY = ['model_id', 'layer', 'probe_id', 'variant', 'quantile', 'seg_size', 'source']
OLD_UNIQUE = 'uq_run_model_id_layer_probe_id_variant_quantile_seg_size_source'


def upgrade() -> None:
    # Every view sits on unit_label_at or unit_category_label: drop all, create all from the new files.
    views.drop(op.execute, views.VIEWS)
    op.add_column('run', sa.Column('superseded_at', sa.DateTime(timezone=True), nullable=True, comment='when --replace swapped this run out; kept only because an embedding uses it. NULL: current'))
    op.add_column('run', sa.Column('superseded_by', sa.Integer(), nullable=True, comment='the run that replaced this one'))
    op.create_foreign_key(op.f('fk_run_superseded_by_run'), 'run', 'run', ['superseded_by'], ['id'], ondelete='SET NULL')
    op.drop_constraint(OLD_UNIQUE, 'run', type_='unique')
    op.create_index('uq_run_current_identity', 'run', IDENTITY, unique=True, postgresql_nulls_not_distinct=True,
                    postgresql_where=sa.text('superseded_at IS NULL'))
    views.create(op.execute, views.VIEWS, revision)


def downgrade() -> None:
    views.drop(op.execute, views.VIEWS)
    # Before 0006 a run was unique per identity: superseded runs go, and with them the embedding points on them.
    op.execute('DELETE FROM run WHERE superseded_at IS NOT NULL')
    op.drop_index('uq_run_current_identity', table_name='run', postgresql_where=sa.text('superseded_at IS NULL'))
    op.create_unique_constraint(OLD_UNIQUE, 'run', IDENTITY, postgresql_nulls_not_distinct=True)
    op.drop_constraint(op.f('fk_run_superseded_by_run'), 'run', type_='foreignkey')
    op.drop_column('run', 'superseded_by')
    op.drop_column('run', 'superseded_at')
    views.create(op.execute, views.VIEWS, down_revision)

"""unit_top_image; view unit_category_label

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from alembic import op
import sqlalchemy as sa

from lce.db import views


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


VIEWS = ("unit_category_label",)


def upgrade() -> None:
    op.create_table('unit_top_image',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('unit', sa.Integer(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('image', sa.Integer(), nullable=False, comment="0-based row of the probe's index.csv"),
    sa.Column('activation', sa.Double(), nullable=False, comment="the unit's largest activation in that image"),
    sa.CheckConstraint('rank >= 0 AND image >= 0', name=op.f('ck_unit_top_image_rank_image')),
    sa.ForeignKeyConstraint(['run_id', 'unit'], ['unit.run_id', 'unit.unit'], name=op.f('fk_unit_top_image_run_id_unit_unit'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'unit', 'rank', name=op.f('pk_unit_top_image'))
    )
    views.create(op.execute, VIEWS, revision)


def downgrade() -> None:
    views.drop(op.execute, VIEWS)
    op.drop_table('unit_top_image')

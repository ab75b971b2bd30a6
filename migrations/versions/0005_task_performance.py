"""task_metric, task_performance; view model_task_performance

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from alembic import op
import sqlalchemy as sa

from lce.db import views


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


VIEWS = ("model_task_performance",)


def upgrade() -> None:
    op.create_table('task_metric',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('family', sa.Text(), nullable=False, comment='task family: many-shot, few-shot, detection, surface-normals, or one the user names'),
    sa.Column('direction', sa.Text(), nullable=False, comment="'higher' or 'lower': which values are better"),
    sa.Column('task', sa.Text(), nullable=True, comment='the evaluation within the family, e.g. linear, 5-shot'),
    sa.Column('dataset', sa.Text(), nullable=True),
    sa.Column('source', sa.Text(), nullable=True, comment='the file the metric was (last) imported from'),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("direction IN ('higher', 'lower')", name=op.f('ck_task_metric_direction')),
    sa.CheckConstraint("family <> '' AND name <> ''", name=op.f('ck_task_metric_names')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_metric')),
    sa.UniqueConstraint('name', name=op.f('uq_task_metric_name'))
    )
    op.create_table('task_performance',
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('metric_id', sa.Integer(), nullable=False),
    sa.Column('value', sa.Double(), nullable=False),
    sa.CheckConstraint("value > '-Infinity' AND value < 'Infinity'", name=op.f('ck_task_performance_value')),
    sa.ForeignKeyConstraint(['metric_id'], ['task_metric.id'], name=op.f('fk_task_performance_metric_id_task_metric'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], name=op.f('fk_task_performance_model_id_model'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('model_id', 'metric_id', name=op.f('pk_task_performance'))
    )
    op.create_index(op.f('ix_task_performance_metric_id'), 'task_performance', ['metric_id'], unique=False)
    views.create(op.execute, VIEWS, revision)


def downgrade() -> None:
    views.drop(op.execute, VIEWS)
    op.drop_index(op.f('ix_task_performance_metric_id'), table_name='task_performance')
    op.drop_table('task_performance')
    op.drop_table('task_metric')

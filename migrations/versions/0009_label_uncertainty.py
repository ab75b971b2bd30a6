"""How sure each label is (issue 16): run's bootstrap settings, unit's interval, stability, runner-up, chance IoU
and lift; unit_alternative and unit_replicate; controls (run_control, control_cutoff, view run_control_of);
embeddings' unit filter, replicates, covariance and co-assignment; unit_label gains those columns and `trusted`

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from lce.db import views


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


UNIT_CHECK = ('0 <= iou_low AND iou_low <= iou_high AND iou_high <= 1 AND stability >= 0 AND stability <= 1 AND '
              'runner_up_iou >= 0 AND runner_up_iou <= 1 AND chance_iou >= 0 AND chance_iou <= 1 AND lift >= 0')
RUN_CHECK = ('(replicates IS NULL OR replicates > 0) AND (bootstrap_blocks IS NULL OR bootstrap_blocks > 0) AND '
             '(replicates IS NULL) = (bootstrap_blocks IS NULL) AND (replicates IS NULL) = (bootstrap_seed IS NULL)')


def upgrade() -> None:
    # Every view sits on unit_label_at or unit_category_label: drop all, create all from the new files.
    views.drop(op.execute, views.VIEWS)
    op.add_column('run', sa.Column('replicates', sa.Integer(), nullable=True, comment='bootstrap replicates behind the units\' intervals and stability; NULL: none (imports)'))
    op.add_column('run', sa.Column('bootstrap_blocks', sa.Integer(), nullable=True, comment='blocks of probe images the bootstrap draws'))
    op.add_column('run', sa.Column('bootstrap_seed', sa.BigInteger(), nullable=True, comment="the bootstrap's seed, from the probe's content hash (shared by every run on the probe)"))
    op.create_check_constraint(op.f('ck_run_bootstrap'), 'run', RUN_CHECK)

    op.add_column('unit', sa.Column('iou_low', sa.Double(), nullable=True, comment="2.5% percentile of the label's bootstrap IoU"))
    op.add_column('unit', sa.Column('iou_high', sa.Double(), nullable=True, comment="97.5% percentile of the label's bootstrap IoU"))
    op.add_column('unit', sa.Column('stability', sa.Double(), nullable=True, comment='share of replicates whose best concept is the label'))
    op.add_column('unit', sa.Column('runner_up_id', sa.Integer(), nullable=True, comment="the concept of second-best IoU (the variant's rule)"))
    op.add_column('unit', sa.Column('runner_up_iou', sa.Double(), nullable=True))
    op.add_column('unit', sa.Column('chance_iou', sa.Double(), nullable=True, comment="the label's IoU expected with its label maps permuted among the images (a baseline)"))
    op.add_column('unit', sa.Column('lift', sa.Double(), nullable=True, comment='iou / chance_iou; NULL where chance_iou is 0'))
    op.create_foreign_key(op.f('fk_unit_runner_up_id_concept'), 'unit', 'concept', ['runner_up_id'], ['id'], ondelete='RESTRICT')
    op.create_check_constraint(op.f('ck_unit_uncertainty'), 'unit', UNIT_CHECK)

    op.create_table('unit_alternative',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('unit', sa.Integer(), nullable=False),
    sa.Column('concept_id', sa.Integer(), nullable=False),
    sa.Column('share', sa.Double(), nullable=False, comment="share of replicates in which it is the unit's best"),
    sa.CheckConstraint('share > 0 AND share <= 1', name=op.f('ck_unit_alternative_share')),
    sa.ForeignKeyConstraint(['concept_id'], ['concept.id'], name=op.f('fk_unit_alternative_concept_id_concept'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['run_id', 'unit'], ['unit.run_id', 'unit.unit'], name=op.f('fk_unit_alternative_run_id_unit_unit'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'unit', 'concept_id', name=op.f('pk_unit_alternative'))
    )
    op.create_index(op.f('ix_unit_alternative_concept_id'), 'unit_alternative', ['concept_id'], unique=False)
    op.create_table('unit_replicate',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('unit', sa.Integer(), nullable=False),
    sa.Column('concept_ids', postgresql.ARRAY(sa.Integer()), nullable=False, comment='concept id per replicate; NULL where no concept overlaps the unit in it'),
    sa.Column('ious', postgresql.ARRAY(sa.REAL()), nullable=False, comment='that concept\'s IoU per replicate (0 without one)'),
    sa.CheckConstraint('cardinality(concept_ids) = cardinality(ious) AND array_position(ious, NULL) IS NULL AND 0 <= ALL (ious) AND 1 >= ALL (ious)', name=op.f('ck_unit_replicate_arrays')),
    sa.ForeignKeyConstraint(['run_id', 'unit'], ['unit.run_id', 'unit.unit'], name=op.f('fk_unit_replicate_run_id_unit_unit'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'unit', name=op.f('pk_unit_replicate'))
    )
    op.create_table('run_control',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_control_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', name=op.f('pk_run_control'))
    )
    op.create_table('control_cutoff',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('concept_id', sa.Integer(), nullable=False),
    sa.Column('cutoff', sa.Double(), nullable=False),
    sa.CheckConstraint('cutoff >= 0 AND cutoff <= 1', name=op.f('ck_control_cutoff_cutoff')),
    sa.ForeignKeyConstraint(['concept_id'], ['concept.id'], name=op.f('fk_control_cutoff_concept_id_concept'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['run_id'], ['run_control.run_id'], name=op.f('fk_control_cutoff_run_id_run_control'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'concept_id', name=op.f('pk_control_cutoff'))
    )

    op.add_column('embedding', sa.Column('units', sa.Text(), server_default='interpretable', nullable=False, comment='the units the matrix counts: interpretable, trusted, beats-random'))
    op.add_column('embedding', sa.Column('replicates', sa.Integer(), nullable=True, comment="replicates behind the points' covariance and the co-assignment; NULL: none"))
    op.create_check_constraint(op.f('ck_embedding_units'), 'embedding', "units IN ('interpretable', 'trusted', 'beats-random')")
    op.create_check_constraint(op.f('ck_embedding_replicates'), 'embedding', 'replicates IS NULL OR replicates > 0')
    op.add_column('embedding_point', sa.Column('covariance', postgresql.ARRAY(sa.Double()), nullable=True, comment='covariance of the coordinates over the replicates, row-major; NULL: none'))
    op.create_table('embedding_coassignment',
    sa.Column('embedding_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('other_model_id', sa.Integer(), nullable=False),
    sa.Column('share', sa.Double(), nullable=False),
    sa.CheckConstraint('share >= 0 AND share <= 1', name=op.f('ck_embedding_coassignment_share')),
    sa.ForeignKeyConstraint(['embedding_id'], ['embedding.id'], name=op.f('fk_embedding_coassignment_embedding_id_embedding'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], name=op.f('fk_embedding_coassignment_model_id_model'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['other_model_id'], ['model.id'], name=op.f('fk_embedding_coassignment_other_model_id_model'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('embedding_id', 'model_id', 'other_model_id', name=op.f('pk_embedding_coassignment'))
    )
    views.create(op.execute, views.VIEWS, revision)


def downgrade() -> None:
    views.drop(op.execute, views.VIEWS)
    op.drop_table('embedding_coassignment')
    op.drop_column('embedding_point', 'covariance')
    op.drop_constraint(op.f('ck_embedding_replicates'), 'embedding', type_='check')
    op.drop_constraint(op.f('ck_embedding_units'), 'embedding', type_='check')
    op.drop_column('embedding', 'replicates')
    op.drop_column('embedding', 'units')
    op.drop_table('control_cutoff')
    op.drop_table('run_control')
    op.drop_table('unit_replicate')
    op.drop_index(op.f('ix_unit_alternative_concept_id'), table_name='unit_alternative')
    op.drop_table('unit_alternative')
    op.drop_constraint(op.f('ck_unit_uncertainty'), 'unit', type_='check')
    op.drop_constraint(op.f('fk_unit_runner_up_id_concept'), 'unit', type_='foreignkey')
    for column in ('lift', 'chance_iou', 'runner_up_iou', 'runner_up_id', 'stability', 'iou_high', 'iou_low'):
        op.drop_column('unit', column)
    op.drop_constraint(op.f('ck_run_bootstrap'), 'run', type_='check')
    for column in ('bootstrap_seed', 'bootstrap_blocks', 'replicates'):
        op.drop_column('run', column)
    views.create(op.execute, views.VIEWS, down_revision)

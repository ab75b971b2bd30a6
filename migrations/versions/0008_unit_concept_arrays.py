"""unit_concept becomes a view over two lean tables: unit_tally (a unit's tallies with one category's concepts, as
arrays) and run_concept (a run's concepts and their truth counts); every stored pair moves over with its values;
unit_category_label reads the arrays

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from lce.db import views


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


ARRAYS = ['concept_ids', 'intersections', 'ious', 'activations', 'truths']
# The pairs as the view unit_concept gives them (the downgrade copies them back into the table).
PAIRS = """
    SELECT t.run_id, t.unit, e.concept_id, e.intersection, COALESCE(e.activation, t.activation),
           COALESCE(e.truth, k.truth), e.iou
    FROM unit_tally t
    CROSS JOIN LATERAL unnest(t.concept_ids, t.intersections, t.ious, t.activations, t.truths)
        AS e (concept_id, intersection, iou, activation, truth)
    JOIN run_concept k ON k.run_id = t.run_id AND k.concept_id = e.concept_id
"""


def upgrade() -> None:
    views.drop(op.execute, ('unit_category_label',))
    op.create_table('run_concept',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('concept_id', sa.Integer(), nullable=False),
    sa.Column('truth', sa.BigInteger(), nullable=True, comment="G; NULL when it differs between the run's units (an imported file): unit_tally.truths"),
    sa.CheckConstraint('truth >= 0', name=op.f('ck_run_concept_truth')),
    sa.ForeignKeyConstraint(['concept_id'], ['concept.id'], name=op.f('fk_run_concept_concept_id_concept'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_run_concept_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'concept_id', name=op.f('pk_run_concept'))
    )
    op.create_index(op.f('ix_run_concept_concept_id'), 'run_concept', ['concept_id'], unique=False)
    arrays = ' AND '.join(f'array_position({name}, NULL) IS NULL AND cardinality({name}) = cardinality(concept_ids)'
                          for name in ARRAYS)
    op.create_table('unit_tally',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('unit', sa.Integer(), nullable=False),
    sa.Column('category', sa.Text(), nullable=False),
    sa.Column('activation', sa.BigInteger(), nullable=True, comment='A; NULL when it differs between the concepts (an imported file): then activations'),
    sa.Column('concept_ids', postgresql.ARRAY(sa.Integer()), nullable=False, comment='ascending; each in run_concept'),
    sa.Column('intersections', postgresql.ARRAY(sa.BigInteger()), nullable=False, comment='I, per concept'),
    sa.Column('ious', postgresql.ARRAY(sa.Double()), nullable=False, comment='IoU as computed or imported, per concept'),
    sa.Column('activations', postgresql.ARRAY(sa.BigInteger()), nullable=True, comment='A per concept, or NULL'),
    sa.Column('truths', postgresql.ARRAY(sa.BigInteger()), nullable=True, comment='G per concept where run_concept.truth is NULL, or NULL'),
    sa.CheckConstraint("category IN ('object', 'part', 'material', 'color', 'scene', 'texture')", name=op.f('ck_unit_tally_category')),
    sa.CheckConstraint(arrays, name=op.f('ck_unit_tally_arrays')),
    sa.CheckConstraint('(activation IS NULL) <> (activations IS NULL)', name=op.f('ck_unit_tally_activation')),
    sa.CheckConstraint('0 <= ALL (intersections) AND activation >= ALL (intersections) AND activation >= 0 AND 0 <= ALL (activations) AND 0 <= ALL (truths)', name=op.f('ck_unit_tally_counts')),
    sa.CheckConstraint('0 <= ALL (ious) AND 1 >= ALL (ious)', name=op.f('ck_unit_tally_iou')),
    sa.ForeignKeyConstraint(['run_id', 'unit'], ['unit.run_id', 'unit.unit'], name=op.f('fk_unit_tally_run_id_unit_unit'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'unit', 'category', name=op.f('pk_unit_tally'))
    )
    # Every stored pair, value for value: a truth that differs between a run's units, or an activation that
    # differs between a unit's concepts of one category (possible in imported files), goes into the arrays.
    op.execute("""
        INSERT INTO run_concept (run_id, concept_id, truth)
        SELECT run_id, concept_id, CASE WHEN min(truth) = max(truth) THEN min(truth) END
        FROM unit_concept GROUP BY run_id, concept_id
    """)
    op.execute("""
        INSERT INTO unit_tally (run_id, unit, category, activation, concept_ids, intersections, ious, activations,
                                truths)
        SELECT t.run_id, t.unit, c.category,
               CASE WHEN min(t.activation) = max(t.activation) THEN min(t.activation) END,
               array_agg(t.concept_id ORDER BY t.concept_id), array_agg(t.intersection ORDER BY t.concept_id),
               array_agg(t.iou ORDER BY t.concept_id),
               CASE WHEN min(t.activation) <> max(t.activation) THEN array_agg(t.activation ORDER BY t.concept_id) END,
               CASE WHEN bool_or(k.truth IS NULL) THEN array_agg(t.truth ORDER BY t.concept_id) END
        FROM unit_concept t
        JOIN concept c ON c.id = t.concept_id
        JOIN run_concept k ON k.run_id = t.run_id AND k.concept_id = t.concept_id
        GROUP BY t.run_id, t.unit, c.category
    """)
    op.drop_index(op.f('ix_unit_concept_concept_id'), table_name='unit_concept')
    op.drop_table('unit_concept')
    views.create(op.execute, ('unit_concept', 'unit_category_label'), revision)


def downgrade() -> None:
    views.drop(op.execute, ('unit_concept', 'unit_category_label'))
    op.create_table('unit_concept',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('unit', sa.Integer(), nullable=False),
    sa.Column('concept_id', sa.Integer(), nullable=False),
    sa.Column('intersection', sa.BigInteger(), nullable=False),
    sa.Column('activation', sa.BigInteger(), nullable=False),
    sa.Column('truth', sa.BigInteger(), nullable=False),
    sa.Column('iou', sa.Double(), nullable=False),
    sa.CheckConstraint('intersection >= 0 AND activation >= 0 AND truth >= 0 AND intersection <= activation AND intersection <= truth', name=op.f('ck_unit_concept_counts')),
    sa.CheckConstraint('iou >= 0 AND iou <= 1', name=op.f('ck_unit_concept_iou')),
    sa.ForeignKeyConstraint(['concept_id'], ['concept.id'], name=op.f('fk_unit_concept_concept_id_concept'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['run_id', 'unit'], ['unit.run_id', 'unit.unit'], name=op.f('fk_unit_concept_run_id_unit_unit'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'unit', 'concept_id', name=op.f('pk_unit_concept'))
    )
    op.execute(f"INSERT INTO unit_concept (run_id, unit, concept_id, intersection, activation, truth, iou) {PAIRS}")
    op.create_index(op.f('ix_unit_concept_concept_id'), 'unit_concept', ['concept_id'], unique=False)
    op.drop_table('unit_tally')
    op.drop_index(op.f('ix_run_concept_concept_id'), table_name='run_concept')
    op.drop_table('run_concept')
    views.create(op.execute, ('unit_category_label',), down_revision)

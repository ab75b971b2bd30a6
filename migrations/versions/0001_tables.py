"""tables: probe, concept, model, run, unit, unit_concept, embedding, embedding_point

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-26
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('model',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('architecture', sa.Text(), nullable=True),
    sa.Column('checkpoint_sha256', sa.Text(), nullable=True),
    sa.Column('family', sa.Text(), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("checkpoint_sha256 ~ '^[0-9a-f]{64}$'", name=op.f('ck_model_checkpoint_sha256')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_model')),
    sa.UniqueConstraint('name', name=op.f('uq_model_name'))
    )
    op.create_table('probe',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('path', sa.Text(), nullable=True, comment='dataset directory; NULL for an imported vocabulary'),
    sa.Column('image_count', sa.Integer(), nullable=True),
    sa.Column('image_size', sa.Integer(), nullable=True),
    sa.Column('seg_size', sa.Integer(), nullable=True),
    sa.Column('content_sha256', sa.Text(), nullable=True, comment="hash of the dataset's CSV files"),
    sa.Column('source', sa.Text(), nullable=False, comment="'broden' or 'imported'"),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("source IN ('broden', 'imported')", name=op.f('ck_probe_source')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_probe')),
    sa.UniqueConstraint('name', name=op.f('uq_probe_name'))
    )
    op.create_table('concept',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('probe_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('category', sa.Text(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=True, comment="label number in the probe's label.csv; NULL for a concept known only by name (imports)"),
    sa.CheckConstraint("category IN ('object', 'part', 'material', 'color', 'scene', 'texture')", name=op.f('ck_concept_category')),
    sa.CheckConstraint('number IS NULL OR number > 0', name=op.f('ck_concept_number')),
    sa.ForeignKeyConstraint(['probe_id'], ['probe.id'], name=op.f('fk_concept_probe_id_probe'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_concept')),
    sa.UniqueConstraint('probe_id', 'category', 'name', name=op.f('uq_concept_probe_id_category_name'))
    )
    op.create_table('embedding',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('method', sa.Text(), nullable=False),
    sa.Column('components', sa.Integer(), nullable=False),
    sa.Column('clusters', sa.Integer(), nullable=False),
    sa.Column('normalize', sa.Text(), nullable=False),
    sa.Column('min_iou', sa.Double(), nullable=False),
    sa.Column('layer', sa.Text(), nullable=False),
    sa.Column('probe_id', sa.Integer(), nullable=False),
    sa.Column('variant', sa.Text(), nullable=False),
    sa.Column('seed', sa.Integer(), nullable=False),
    sa.Column('concept_count', sa.Integer(), nullable=False, comment='columns of the model x concept matrix'),
    sa.Column('explained_variance', sa.ARRAY(sa.Double()), nullable=True, comment='PCA only'),
    sa.Column('inertia', sa.ARRAY(sa.Double()), nullable=False, comment='KMeans inertia for k = 1, 2, ...'),
    sa.Column('settings', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('code_version', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("method IN ('pca', 'mds', 'tsne')", name=op.f('ck_embedding_method')),
    sa.CheckConstraint("normalize IN ('population', 'selection', 'none')", name=op.f('ck_embedding_normalize')),
    sa.CheckConstraint('components > 0 AND clusters > 0', name=op.f('ck_embedding_sizes')),
    sa.ForeignKeyConstraint(['probe_id'], ['probe.id'], name=op.f('fk_embedding_probe_id_probe'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_embedding'))
    )
    op.create_table('run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('probe_id', sa.Integer(), nullable=False),
    sa.Column('layer', sa.Text(), nullable=False),
    sa.Column('variant', sa.Text(), nullable=False, comment="'netdissect' or 'dissect' (method.md section 1)"),
    sa.Column('quantile', sa.Double(), nullable=False, comment='top fraction of activations above the threshold'),
    sa.Column('iou_threshold', sa.Double(), nullable=False, comment="IoU cut-off for 'interpretable' (strict >)"),
    sa.Column('seg_size', sa.Integer(), nullable=True, comment='segmentation resolution S; NULL if unknown'),
    sa.Column('checkpoint_sha256', sa.Text(), nullable=True),
    sa.Column('source', sa.Text(), nullable=False, comment="'dissected' or 'imported:<format>'"),
    sa.Column('source_sha256', sa.Text(), nullable=True, comment="hash of the imported file's rows for this run"),
    sa.Column('settings', postgresql.JSONB(astext_type=sa.Text()), server_default='{}', nullable=False),
    sa.Column('code_version', sa.Text(), nullable=False),
    sa.Column('unit_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.CheckConstraint("source = 'dissected' OR source LIKE 'imported:%%'", name=op.f('ck_run_source')),
    sa.CheckConstraint("variant IN ('netdissect', 'dissect')", name=op.f('ck_run_variant')),
    sa.CheckConstraint('iou_threshold >= 0 AND iou_threshold <= 1', name=op.f('ck_run_iou_threshold')),
    sa.CheckConstraint('quantile > 0 AND quantile < 1', name=op.f('ck_run_quantile')),
    sa.CheckConstraint('seg_size IS NULL OR seg_size > 0', name=op.f('ck_run_seg_size')),
    sa.CheckConstraint('unit_count >= 0', name=op.f('ck_run_unit_count')),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], name=op.f('fk_run_model_id_model'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['probe_id'], ['probe.id'], name=op.f('fk_run_probe_id_probe'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run')),
    sa.UniqueConstraint('model_id', 'layer', 'probe_id', 'variant', 'quantile', 'seg_size', 'source', name=op.f('uq_run_model_id_layer_probe_id_variant_quantile_seg_size_source'), postgresql_nulls_not_distinct=True)
    )
    op.create_index(op.f('ix_run_probe_id_layer_variant'), 'run', ['probe_id', 'layer', 'variant'], unique=False)
    op.create_table('embedding_point',
    sa.Column('embedding_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('coordinates', sa.ARRAY(sa.Double()), nullable=False),
    sa.Column('cluster', sa.Integer(), nullable=False),
    sa.CheckConstraint('cluster >= 0', name=op.f('ck_embedding_point_cluster')),
    sa.ForeignKeyConstraint(['embedding_id'], ['embedding.id'], name=op.f('fk_embedding_point_embedding_id_embedding'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['model.id'], name=op.f('fk_embedding_point_model_id_model'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_embedding_point_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('embedding_id', 'model_id', name=op.f('pk_embedding_point'))
    )
    op.create_index(op.f('ix_embedding_point_run_id'), 'embedding_point', ['run_id'], unique=False)
    op.create_table('unit',
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('unit', sa.Integer(), nullable=False),
    sa.Column('threshold', sa.Double(), nullable=True, comment='activation threshold T_u; NULL for imports'),
    sa.Column('concept_id', sa.Integer(), nullable=True),
    sa.Column('iou', sa.Double(), nullable=True),
    sa.CheckConstraint('iou >= 0 AND iou <= 1', name=op.f('ck_unit_iou')),
    sa.CheckConstraint('unit >= 0', name=op.f('ck_unit_unit')),
    sa.ForeignKeyConstraint(['concept_id'], ['concept.id'], name=op.f('fk_unit_concept_id_concept'), ondelete='RESTRICT'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_unit_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('run_id', 'unit', name=op.f('pk_unit'))
    )
    op.create_index(op.f('ix_unit_concept_id'), 'unit', ['concept_id'], unique=False)
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
    op.create_index(op.f('ix_unit_concept_concept_id'), 'unit_concept', ['concept_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_unit_concept_concept_id'), table_name='unit_concept')
    op.drop_table('unit_concept')
    op.drop_index(op.f('ix_unit_concept_id'), table_name='unit')
    op.drop_table('unit')
    op.drop_index(op.f('ix_embedding_point_run_id'), table_name='embedding_point')
    op.drop_table('embedding_point')
    op.drop_index(op.f('ix_run_probe_id_layer_variant'), table_name='run')
    op.drop_table('run')
    op.drop_table('embedding')
    op.drop_table('concept')
    op.drop_table('probe')
    op.drop_table('model')

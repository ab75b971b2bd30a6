"""views: unit_label, model_concept_units, model_category_profile, model_concept_matrix (from sql/)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from alembic import op

from lce.db import views

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


VIEWS = ("unit_label", "model_concept_units", "model_category_profile", "model_concept_matrix")


def upgrade() -> None:
    views.create(op.execute, VIEWS, revision)


def downgrade() -> None:
    views.drop(op.execute, VIEWS)

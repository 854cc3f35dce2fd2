"""runs.status takes only running, done or failed (a CHECK constraint); points.dominated (nullable)

Revision ID: 0004
Revises: 0003

SQLite cannot add a constraint to a table, so batch mode copies ``runs`` into a new table with
it; the store runs SQLite migrations with foreign keys off, so dropping the old ``runs`` does
not cascade to the points and tables of every run.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Spelled out, not imported: a migration keeps meaning what it meant when it was written.
STATUS_CHECK = "status IN ('running', 'done', 'failed')"


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.create_check_constraint("ck_runs_status", STATUS_CHECK)
    with op.batch_alter_table("points") as batch:
        batch.add_column(sa.Column("dominated", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("points") as batch:
        batch.drop_column("dominated")
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("ck_runs_status", type_="check")

"""Every table of the results store, as SQLAlchemy 2.0 typed models (one module, as Optuna does).

Tables between pipeline stages (layers, sensitivity, omega, costs) are stored whole as JSON
documents in ``run_tables``; the frontier is relational (``points`` and ``assignments``) so it
can be queried and compared.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from mpq._storage.base import RUN_STATUSES

#: The CHECK constraint on ``runs.status`` (schema 0004).
STATUS_CHECK = "status IN (" + ", ".join(f"'{s}'" for s in RUN_STATUSES) + ")"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class RunModel(Base):
    """One search: what went in (hashes, settings, target, budgets) and how it ended."""

    __tablename__ = "runs"
    __table_args__ = (CheckConstraint(STATUS_CHECK, name="ck_runs_status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(16), default="running")  # one of RUN_STATUSES (0004)
    error: Mapped[str | None] = mapped_column(Text)
    task_name: Mapped[str] = mapped_column(String(256))
    model_spec: Mapped[str | None] = mapped_column(String(1024))  # schema 0002
    owner: Mapped[str | None] = mapped_column(String(256))  # schema 0003: "host:pid" of the process running it
    metric_name: Mapped[str] = mapped_column(String(64))
    model_hash: Mapped[str] = mapped_column(String(64), index=True)
    data_hash: Mapped[str] = mapped_column(String(64))
    probe_key: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128), index=True)
    objectives: Mapped[list] = mapped_column(JSON)
    budgets: Mapped[dict] = mapped_column(JSON)
    settings: Mapped[dict] = mapped_column(JSON)
    versions: Mapped[dict] = mapped_column(JSON)
    float_metric: Mapped[float | None] = mapped_column(Float)
    spearman: Mapped[float | None] = mapped_column(Float)

    tables: Mapped[list[RunTableModel]] = relationship(back_populates="run", cascade="all, delete-orphan")
    points: Mapped[list[PointModel]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="PointModel.point"
    )


class RunTableModel(Base):
    """A pipeline table of a run (layers, sensitivity, omega, costs) as a JSON document."""

    __tablename__ = "run_tables"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    table_json: Mapped[str] = mapped_column(Text)

    run: Mapped[RunModel] = relationship(back_populates="tables")


class PointModel(Base):
    """One configuration of a run: a frontier point or a uniform baseline."""

    __tablename__ = "points"
    __table_args__ = (UniqueConstraint("run_id", "point"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    point: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(128))
    is_baseline: Mapped[bool] = mapped_column(Boolean)
    optimal: Mapped[bool] = mapped_column(Boolean)
    predicted_loss: Mapped[float] = mapped_column(Float)
    costs: Mapped[dict] = mapped_column(JSON)
    measured_metric: Mapped[float | None] = mapped_column(Float)
    # schema 0004: beaten on measurement by another point (better metric at no higher cost); null until validated
    dominated: Mapped[bool | None] = mapped_column(Boolean)

    run: Mapped[RunModel] = relationship(back_populates="points")
    assignments: Mapped[list[AssignmentModel]] = relationship(
        back_populates="point_row", cascade="all, delete-orphan", order_by="AssignmentModel.position"
    )


class AssignmentModel(Base):
    """The candidate a point gives one layer."""

    __tablename__ = "assignments"

    point_id: Mapped[int] = mapped_column(ForeignKey("points.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    layer: Mapped[str] = mapped_column(String(512))
    candidate: Mapped[str] = mapped_column(String(128))

    point_row: Mapped[PointModel] = relationship(back_populates="assignments")


class ProbeResultModel(Base):
    """A finished sensitivity table, keyed by (model hash, data hash, probe settings)."""

    __tablename__ = "probe_results"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_hash: Mapped[str] = mapped_column(String(64))
    data_hash: Mapped[str] = mapped_column(String(64))
    settings: Mapped[dict] = mapped_column(JSON)
    table_json: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProbeCheckpointModel(Base):
    """Running sums of an unfinished probe, so an interrupted probe resumes."""

    __tablename__ = "probe_checkpoints"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    state: Mapped[dict] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)

"""Taking up an unfinished run: the one ``--resume`` names, or one of this same search nobody runs."""

from __future__ import annotations

import json
from collections.abc import Mapping

import pandas as pd

from mpq._liveness import current_owner, owner_alive
from mpq._search.identity import Identity
from mpq._search.plan import Progress
from mpq._storage import Store, table_to_json
from mpq.exceptions import InvalidParameterError

#: Record fields that make two searches the same search (with the cost table, compared apart).
SAME_SEARCH = (
    "task_name",
    "metric_name",
    "model_hash",
    "data_hash",
    "probe_key",
    "target",
    "objectives",
    "budgets",
    "settings",
)
#: Settings of how a run ran, not of what it searches: a run resumes on another device or executor.
EXECUTION = ("device", "executor")


def resume_abandoned(store: Store, fields: dict, costs: pd.DataFrame, progress: Progress) -> int | None:
    """The id of an unfinished run of this same search that nobody is running (interrupted,
    failed, or its process killed), claimed for this process; None when there is none."""
    same = {name: fields[name] for name in SAME_SEARCH if name != "settings"}
    settings = _search_settings(fields["settings"])
    costs_json = table_to_json(costs)
    for record in store.unfinished_runs(**same):
        if _search_settings(record["settings"]) != settings or owner_alive(store.url, record) is not False:
            continue
        stored_costs = store.run_tables(record["id"]).get("costs")
        if stored_costs is None or table_to_json(stored_costs) != costs_json:
            continue  # another device file or measured latency table: not the same search
        if store.claim_run(record["id"], seen=record, owner=current_owner()):
            how = record["error"] or "its process ended"
            progress(
                "resume", 1, 1, f"resuming run {record['id']} of this same search ({how}); --fresh starts a new run"
            )
            return record["id"]
    return None


def _search_settings(settings: Mapping) -> dict:
    """The settings that make two runs the same search (as JSON reads them back): not how they ran."""
    return json.loads(json.dumps({k: v for k, v in settings.items() if k not in EXECUTION}, default=str))


def claim_for_resume(store: Store, run_id: int, identity: Identity) -> dict | None:
    """The record of the run ``--resume`` names, claimed for this process; None when it is done.
    Another model or data, or a run a live process is running, is refused."""
    record = store.run_record(run_id)
    for what, stored, current in (
        ("model", record["model_hash"], identity.model_hash),
        ("calibration data", record["data_hash"], identity.data_hash),
    ):
        if stored != current:
            raise InvalidParameterError(
                f"run {run_id} searched task {record['task_name']!r} with {what} {stored[:12]}, but this task's "
                f"{what} hashes {current[:12]}; resume with the same --model, or start a new search without --resume."
            )
    if record["status"] == "done":
        return None
    if owner_alive(store.url, record) or not store.claim_run(run_id, seen=record, owner=current_owner()):
        raise InvalidParameterError(
            f"run {run_id} is being run by process {record['owner'] or 'another process'} right now; wait for it, or "
            "stop that process first."
        )
    return record

"""Where a probe keeps the samples it has taken, so that an interrupted run resumes.

A probe saves its state (per family: the sample count and the running mean and sum of squared
deviations of every estimate; for ``measured``: the pairs done) after every sample, under a
key that hashes the model's weights, the calibration data and the settings
(:func:`probe_key`). Anything with ``load_probe_checkpoint(key)`` and
``save_probe_checkpoint(key, state)`` can hold it (:class:`CheckpointStore`): mpq's results store
does, and mpq ships a folder of JSON files, :class:`ProbeCheckpoint`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch

from mpq._fingerprint import callable_hash
from mpq._probes.settings import ProbeSettings, settings_hash
from mpq._task import Task

#: Bump when the saved state's meaning changes: old checkpoints then no longer match a key.
STATE_VERSION = 1


@runtime_checkable
class CheckpointStore(Protocol):
    """Holds probe states by key (a file store, a database table...)."""

    def load_probe_checkpoint(self, key: str) -> dict | None:
        """The state saved under ``key``, or None."""

    def save_probe_checkpoint(self, key: str, state: dict) -> None:
        """Replace the state saved under ``key`` in one step; ``state`` is JSON-serialisable."""


@dataclass(frozen=True)
class ProbeCheckpoint:
    """A :class:`CheckpointStore` of JSON files, ``<path>/<key>.json``, written atomically.

    Attributes:
        path: A directory; created on the first save.
    """

    path: str | os.PathLike

    def _file(self, key: str) -> Path:
        return Path(self.path) / f"{key}.json"

    def load_probe_checkpoint(self, key: str) -> dict | None:
        """The state saved under ``key``, or None when there is none.

        Args:
            key: A :func:`probe_key`.

        Returns:
            The state, or None.
        """
        file = self._file(key)
        if not file.is_file():
            return None
        return json.loads(file.read_text(encoding="utf-8"))

    def save_probe_checkpoint(self, key: str, state: dict) -> None:
        """Write the state under ``key``, replacing the old one in one step.

        Args:
            key: A :func:`probe_key`.
            state: A JSON-serialisable dict.
        """
        file = self._file(key)
        file.parent.mkdir(parents=True, exist_ok=True)
        tmp = file.with_name(f"{file.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state), encoding="utf-8")
        os.replace(tmp, file)  # a reader never sees half a file


def model_hash(model: torch.nn.Module) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of the model's state dict."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        _update(digest, name)
        _update_tensor(digest, tensor)
    return digest.hexdigest()


def data_hash(calibration: Any) -> str:
    """SHA-256 over the calibration batches (tensors by dtype, shape and bytes; structure kept)."""
    digest = hashlib.sha256()
    _update_obj(digest, calibration)
    return digest.hexdigest()


def probe_key(task: Task, settings: ProbeSettings) -> str:
    """The key a probe's state is saved under: a hash of weights, data, settings and the loss
    (its code and what it reads: :func:`mpq._fingerprint.callable_hash`), so that a probe of
    another loss is never reused.

    Args:
        task: The task.
        settings: The probe settings.

    Returns:
        64 hex characters.
    """
    return probe_key_of(model_hash(task.model), data_hash(task.calibration), settings, callable_hash(task.loss_fn))


def probe_key_of(
    weights_hash: str, calibration_hash: str, settings: ProbeSettings, loss_hash: str, decision: str | None = None
) -> str:
    """:func:`probe_key` from the hashes of the model, the data and the loss, when they are known
    already; ``decision``, the hash of what a search's stop decision depends on (its target's
    costs), is part of the key when given."""
    parts = [str(STATE_VERSION), weights_hash, calibration_hash, settings_hash(settings), loss_hash]
    if decision is not None:
        parts.append(decision)
    return hashlib.sha256("/".join(parts).encode()).hexdigest()


def _update(digest, text: str) -> None:
    data = text.encode()
    digest.update(len(data).to_bytes(8, "little") + data)


def _update_tensor(digest, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().cpu().contiguous()
    _update(digest, f"tensor {tensor.dtype} {tuple(tensor.shape)}")
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())


def _update_obj(digest, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        _update_tensor(digest, obj)
    elif isinstance(obj, Mapping):
        _update(digest, f"dict {len(obj)}")
        for key, value in obj.items():
            _update(digest, repr(key))
            _update_obj(digest, value)
    elif isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        _update(digest, f"{type(obj).__name__} {len(obj)}")
        for value in obj:
            _update_obj(digest, value)
    else:
        _update(digest, f"{type(obj).__name__} {obj!r}")

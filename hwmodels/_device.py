"""Device records read from TOML files, the one folder resolver, and the device listing.

A device file (``data/devices/<name>.toml``; the name is the file stem) holds::

    kind = "gpu"                       # gpu | fpga | mcu | cpu: picks the cost model
    description = "NVIDIA H100 SXM5"   # one line for listings
    candidates = ["w8a8", "w4a16"]     # candidate names the device runs
    activation_grid = "symmetric"      # asymmetric | unsigned | symmetric: what its kernels take
    ...                                # the numbers the kind's cost model reads (its spec)
    [energy]                           # optional overrides of the Horowitz defaults

Every number carries its source in a comment. A user adds a device by writing such a file in
the device folder, or passes the path of a ``.toml`` file anywhere to :func:`load_device`.
"""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from hwmodels._energy import EnergyTable, read_energy
from hwmodels._errors import DeviceSpecError, HwModelError, UnknownDeviceError
from hwmodels._fields import FieldReader
from hwmodels._registry import get_cost_model
from mpqvocab import choices_hint, shown

__all__ = ["Device", "device_dir", "list_devices", "load_device"]

logger = logging.getLogger("hwmodels.device")

_PACKAGE_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Device:
    """A target device: its kind, the candidates it runs and the numbers of its cost model.

    Attributes:
        name: Device name (the file stem), e.g. ``"h100-sxm"``.
        kind: ``"gpu"``, ``"fpga"``, ``"mcu"`` or ``"cpu"``; selects the cost model.
        description: One line for listings.
        candidates: Candidate names the device runs, in file order.
        activation_grid: The integer grid its kernels take for a layer's input:
            ``asymmetric`` (a zero point; unsigned when the input is never negative),
            ``unsigned`` (unsigned when never negative, else symmetric) or ``symmetric`` (zero
            point 0). Absent from the file: ``symmetric``, which every integer kernel runs.
            The zero point costs nothing at run time: ``sum w (q - z) = sum w q - z sum w``, and
            the second term is a per-channel constant folded into the int32 bias.
        spec: The kind's spec record (``RooflineSpec``, ``FpgaSpec`` or ``McuSpec``) with the
            datasheet numbers the cost model reads.
        energy: Per-operation and per-byte energies (Horowitz defaults plus file overrides).
        path: The file the device was read from.
    """

    name: str
    kind: str
    description: str
    candidates: tuple[str, ...]
    activation_grid: str
    spec: Any
    energy: EnergyTable
    path: Path

    def limits(self) -> dict[str, float]:
        """Capacities of the device that bound summed (or max) cost columns.

        Returns:
            Cost column -> capacity, e.g. ``{"luts": 230400, ...}`` on an FPGA or
            ``{"flash_bytes": ..., "sram_bytes": ...}`` on an MCU; empty for GPU and CPU.
        """
        return self.spec.limits()


#: The integer grids a device's kernels may take for inputs (``Device.activation_grid``).
ACTIVATION_GRIDS = ("asymmetric", "unsigned", "symmetric")


def device_dir() -> Path:
    """Return the folder the built-in device files are read from.

    The source checkout's ``data/devices/`` comes first; an installed package falls back to its
    own ``hwmodels/devices/`` folder (package data).

    Returns:
        The device folder.

    Raises:
        HwModelError: If neither folder exists (a broken installation).
    """
    checkout = _PACKAGE_DIR.parent / "data" / "devices"
    installed = _PACKAGE_DIR / "devices"
    for folder in (checkout, installed):
        if folder.is_dir():
            return folder
    raise HwModelError(
        f"device folder: neither {checkout} nor {installed} exists; reinstall mpq or pass a path to a .toml file."
    )


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _looks_like_path(name_or_path: str | os.PathLike) -> bool:
    if isinstance(name_or_path, os.PathLike):
        return True
    return name_or_path.endswith(".toml") or "/" in name_or_path or os.sep in name_or_path


def known_device_names() -> list[str]:
    """Return the names of the built-in devices, sorted."""
    return sorted(p.stem for p in device_dir().glob("*.toml"))


def _resolve(name_or_path: str | os.PathLike) -> Path:
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise UnknownDeviceError(
            f"device: expected a device name or a path to a .toml file, got {name_or_path!r}; "
            "pass a name such as 'h100-sxm' (see hwmodels.list_devices())."
        )
    if _looks_like_path(name_or_path):
        path = Path(name_or_path).expanduser()
        if not _is_file(path):
            raise DeviceSpecError(f"{shown(str(path))}: device file not found; check the path.")
        return path.resolve()
    name = name_or_path.strip().lower()
    path = device_dir() / f"{name}.toml"
    if not _is_file(path):
        raise UnknownDeviceError(
            f"unknown device {shown(name_or_path)}; choose one of {choices_hint(name, known_device_names())}, "
            "or pass the path of a .toml device file."
        )
    return path


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a name the system refuses (too long: ``is_file`` raises)."""
    try:
        return path.is_file()
    except OSError:
        return False


def _read(path: Path) -> Device:
    source = _display(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DeviceSpecError(f"{source}: cannot be read ({exc}); check the file.") from exc
    except tomllib.TOMLDecodeError as exc:
        raise DeviceSpecError(f"{source}: not valid TOML ({exc}); fix the syntax.") from exc
    reader = FieldReader(raw, source)
    kind = reader.string("kind")
    model = get_cost_model(kind, source=source)
    device = Device(
        name=path.stem,
        kind=kind,
        description=reader.string("description"),
        candidates=reader.string_list("candidates"),
        activation_grid=reader.choice("activation_grid", ACTIVATION_GRIDS, "symmetric"),
        spec=model.spec.read(reader),
        energy=read_energy(reader.table("energy", required=False)),
        path=path,
    )
    reader.finish()
    logger.debug("loaded device %s (%s) from %s", device.name, device.kind, source)
    return device


def load_device(name_or_path: str | os.PathLike) -> Device:
    """Load a device by name (a file in :func:`device_dir`) or from a path to a ``.toml`` file.

    Args:
        name_or_path: A device name such as ``"h100-sxm"`` (case-insensitive), or a path
            (``str`` ending in ``.toml`` or containing a separator, or a ``PathLike``).

    Returns:
        The :class:`Device`.

    Raises:
        UnknownDeviceError: If no built-in device has that name (lists the known ones and the
            closest match).
        DeviceSpecError: If the file is missing, is not TOML, or has a missing, unknown or
            out-of-range field (the message names the file and the key).

    Example:
        >>> load_device("zcu104").kind
        'fpga'
    """
    return _read(_resolve(name_or_path))


def list_devices() -> pd.DataFrame:
    """List the built-in devices.

    Returns:
        One row per device file in :func:`device_dir`, sorted by name, with columns
        ``name`` (str), ``kind`` (str), ``description`` (str), ``candidates`` (str: the
        candidate names joined by ``", "``) and ``path`` (str: the file).

    Raises:
        DeviceSpecError: If a device file is broken (names the file and key).
    """
    rows = []
    for name in known_device_names():
        device = _read(device_dir() / f"{name}.toml")
        rows.append(
            {
                "name": device.name,
                "kind": device.kind,
                "description": device.description,
                "candidates": ", ".join(device.candidates),
                "path": str(device.path),
            }
        )
    return pd.DataFrame(rows, columns=["name", "kind", "description", "candidates", "path"])

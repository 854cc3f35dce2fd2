"""Cost models of target devices: (layer table, device, candidates) -> cost table.

Pure functions of tables and device files (numpy, pandas, tomllib); no torch, no database.

* :func:`load_device` / :func:`list_devices` read ``data/devices/*.toml`` (:func:`device_dir`).
* :func:`cost_table` costs every (layer, candidate) pair with the model of the device's kind:
  a roofline for ``gpu`` and ``cpu``, FINN-R streaming for ``fpga``, CMSIS-NN for ``mcu``.
* :func:`load_measured_latency` reads measured latencies that override the model.
"""

# Importing the model modules registers them by device kind.
from hwmodels import _cpu, _fpga, _gpu, _mcu  # noqa: F401
from hwmodels._costs import cost_table
from hwmodels._device import Device, device_dir, list_devices, load_device
from hwmodels._errors import (
    DeviceSpecError,
    HwModelError,
    InvalidParameterError,
    InvalidTableError,
    LayerDoesNotFitError,
    UnknownDeviceError,
)
from hwmodels._measured import load_measured_latency

__all__ = [
    # devices
    "Device",
    "device_dir",
    "list_devices",
    "load_device",
    # costs
    "cost_table",
    "load_measured_latency",
    # errors
    "DeviceSpecError",
    "HwModelError",
    "InvalidParameterError",
    "InvalidTableError",
    "LayerDoesNotFitError",
    "UnknownDeviceError",
]

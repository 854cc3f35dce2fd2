"""Every device file loads, follows the schema, has positive numbers and cites a source for each."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

import hwmodels

REPO = Path(__file__).resolve().parents[2]
DEVICE_FILES = sorted((REPO / "data" / "devices").glob("*.toml"))

REQUIRED = {
    "h100-sxm": "gpu",
    "a100": "gpu",
    "rtx4090": "gpu",
    "jetson-agx-orin": "gpu",
    "zcu104": "fpga",
    "pynq-z1": "fpga",
    "stm32h743": "mcu",
    "stm32f746": "mcu",
    "cpu-x86": "cpu",
}
# a key = value line whose value starts like a number
_NUMERIC_LINE = re.compile(r"^\s*[\w.\"-]+\s*=\s*[-+]?(\d|\.\d|inf|nan)")
_SOURCE_COMMENT = re.compile(r"#\s*\S.{5,}")


def _numbers(table, prefix=""):
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            yield f"{prefix}{key}", value


def test_the_required_devices_exist_with_their_kinds():
    listing = hwmodels.list_devices()
    kinds = dict(zip(listing["name"], listing["kind"]))
    assert {name: kinds.get(name) for name in REQUIRED} == REQUIRED
    assert listing["name"].tolist() == sorted(p.stem for p in DEVICE_FILES)


def test_device_dir_is_the_checkout_folder():
    assert hwmodels.device_dir() == REPO / "data" / "devices"


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.stem)
def test_device_file_schema(path):
    device = hwmodels.load_device(path.stem)
    assert device == hwmodels.load_device(path)
    assert device.name == path.stem
    assert device.kind in {"gpu", "fpga", "mcu", "cpu"}
    assert device.description.strip()
    assert device.candidates and len(set(device.candidates)) == len(device.candidates)
    assert all(re.fullmatch(r"w\w+a\w+", c) for c in device.candidates)
    assert all(value > 0 for value in device.limits().values())


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.stem)
def test_every_number_is_positive(path):
    numbers = list(_numbers(tomllib.loads(path.read_text())))
    assert numbers, "a device file without numbers"
    assert [(key, value) for key, value in numbers if not value > 0] == []


@pytest.mark.parametrize("path", DEVICE_FILES, ids=lambda p: p.stem)
def test_every_numeric_line_cites_its_source(path):
    lines = path.read_text().splitlines()
    numeric = [line for line in lines if _NUMERIC_LINE.match(line)]
    assert len(numeric) == len(list(_numbers(tomllib.loads(path.read_text()))))  # one number per line
    assert [line for line in numeric if not _SOURCE_COMMENT.search(line)] == []


@pytest.mark.parametrize(
    "name, closest",
    [("h100", "h100-sxm"), ("zcu-104", "zcu104"), ("stm32h7", "stm32h743"), ("rtx-4090", "rtx4090")],
)
def test_unknown_device_lists_the_known_ones_and_suggests_one(name, closest):
    with pytest.raises(hwmodels.UnknownDeviceError) as err:
        hwmodels.load_device(name)
    message = str(err.value)
    assert message.startswith(f"unknown device '{name}'; choose one of a100, cpu-x86, cpu-x86-avx2, h100-sxm,")
    assert f"(did you mean '{closest}'?)" in message
    assert "\n" not in message


def test_names_are_case_insensitive():
    assert hwmodels.load_device("H100-SXM").name == "h100-sxm"


def test_missing_device_path(tmp_path):
    with pytest.raises(hwmodels.DeviceSpecError, match="device file not found; check the path"):
        hwmodels.load_device(tmp_path / "nope.toml")


def test_a_user_device_file_outside_the_folder_works(device_file, tables):
    path = device_file("my-gpu", base="a100", replace={"dram_bytes_per_s = 2.039e12": "dram_bytes_per_s = 1e12"})
    costs = hwmodels.cost_table(tables.layers(tables.linear("fc", 4096, 4096)), str(path), tables.candidates("w16a16"))
    # memory-bound: (4096^2 * 2 + 4096 * 4 + 8192 * 2) bytes at 1e12 B/s, plus 3 us
    assert costs["latency_s"].item() == pytest.approx((33_554_432 + 16_384 + 16_384) / 1e12 + 3e-6, rel=1e-12)
    assert costs.attrs["device"] == "my-gpu"


@pytest.mark.parametrize(
    "base, replace, message",
    [
        (
            "zcu104",
            {'kind = "fpga"': 'kind = "fgpa"'},
            "'kind' 'fgpa' has no cost model; use one of gpu, cpu, fpga, mcu (did you mean 'fpga'?)",
        ),
        (
            "zcu104",
            {"luts = 230400": "lut = 230400"},
            "'luts' is missing (it must be a positive int; the file has 'lut')",
        ),
        (
            "zcu104",
            {"dsps = 1728": "dsps = 1728\nlutz = 5  # x"},
            "'lutz' is not a known key here; use one of activation_grid, brams, candidates",
        ),
        ("zcu104", {"dsps = 1728": "dsps = 1728\nlutz = 5  # x"}, "(did you mean 'luts'?)"),
        (
            "zcu104",
            {"dsps = 1728": "# dsps removed"},
            "'dsps' is missing (it must be a positive int); add it with its source in a comment.",
        ),
        (
            "zcu104",
            {"usable_fraction = 0.8": "usable_fraction = 1.5"},
            "'usable_fraction' must be a number in (0, 1], got 1.5",
        ),
        ("zcu104", {"luts = 230400": 'luts = "many"'}, "'luts' must be a positive int, got 'many'"),
        ("zcu104", {"luts = 230400": "luts = 230400.5"}, "'luts' must be a positive int, got 230400.5"),
        (
            "zcu104",
            {'candidates = ["w2a2", ': 'candidates = ["w2a2", "w2a2", '},
            "'candidates' lists 'w2a2' twice; keep each name once.",
        ),
        (
            "zcu104",
            {'candidates = ["w2a2", "w4a4", "w4a8", "w8a8"]': "candidates = []"},
            "'candidates' must be a non-empty list of names",
        ),
        ("zcu104", {"luts = 230400": "luts = = 230400"}, "not valid TOML"),
        ("h100-sxm", {"fp8 = 1978.9e12": "fp5 = 1978.9e12"}, "'peak_ops_per_s.fp5' is not a known key; use one of"),
        (
            "h100-sxm",
            {"fp16 = 989.4e12": "fp16 = 0"},
            "'peak_ops_per_s.fp16' must be a positive number of ops per second, got 0",
        ),
        (
            "h100-sxm",
            {"launch_overhead_s = 3.0e-6": "launch_overhead_s = -3.0e-6"},
            "'launch_overhead_s' must be a non-negative number",
        ),
        ("stm32h743", {"s8 = 2.0": "s32 = 2.0"}, "'macs_per_cycle.s32' is not a known key; use one of s4, s8, s16"),
        (
            "stm32h743",
            {"layer_overhead_cycles = 2000": "layer_overhead_cycles = -1"},
            "'layer_overhead_cycles' must be a non-negative int, got -1",
        ),
    ],
)
def test_broken_device_files_give_one_line_naming_file_and_key(device_file, base, replace, message):
    path = device_file(base, base=base, replace=replace)
    with pytest.raises(hwmodels.DeviceSpecError) as err:
        hwmodels.load_device(path)
    text = str(err.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


ENERGY_OVERRIDES = """\
[energy]
dram_pj_per_byte = 100.0  # test value
[energy.mult_pj]
int8 = 0.4  # test value

"""


def test_energy_overrides(device_file, tables):
    layers = tables.layers(tables.linear("fc", 64, 64))
    cands = tables.candidates("w4a4", "w8a8")
    default = hwmodels.cost_table(layers, "a100", cands)
    path = device_file(
        "a100-energy",
        base="a100",
        replace={"[peak_ops_per_s]": ENERGY_OVERRIDES + "[peak_ops_per_s]"},
    )
    device = hwmodels.load_device(path)
    costs = hwmodels.cost_table(layers, device, cands)
    # int8 MAC: 0.4 + 0.03 pJ; int4 scales from the overridden int8 anchor: 0.4 / 4 + 0.03 / 2
    assert device.energy.mac_pj("int8") == pytest.approx(0.43, rel=1e-12)
    assert device.energy.mac_pj("int4") == pytest.approx(0.1 + 0.015, rel=1e-12)
    for i, mac_pj in ((0, 0.115), (1, 0.43)):
        expected = (64 * 64 * mac_pj + costs["dram_bytes"][i] * 100.0) * 1e-12
        assert costs["energy_j"][i] == pytest.approx(expected, rel=1e-12)
    assert (costs["latency_s"] == default["latency_s"]).all()


def test_default_energies_follow_horowitz():
    energy = hwmodels.load_device("h100-sxm").energy
    assert energy.mac_pj("int8") == pytest.approx(0.2 + 0.03)
    assert energy.mac_pj("fp16") == pytest.approx(1.1 + 0.4)
    assert energy.mac_pj("fp32") == pytest.approx(3.7 + 0.9)
    # square law for the multiplier, linear for the adder, from the nearest anchor in width
    assert energy.mac_pj("fp8") == pytest.approx(1.1 / 4 + 0.4 / 2)
    assert energy.mac_pj("int16") == pytest.approx(0.2 * 4 + 0.03 * 2)
    assert energy.dram_pj_per_byte == pytest.approx(1950 / 8)

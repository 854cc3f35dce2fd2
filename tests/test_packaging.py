"""A real wheel ships what the checkout keeps outside the packages: device files, migrations,
the dashboard, the example sentences, and the ``mpq`` command; and building it is quiet."""

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]

#: Each folder of the checkout that ships, and where its files go in the wheel (pyproject's package-dir).
SHIPPED = {
    "mpq": "mpq",
    "mpqvocab": "mpqvocab",
    "solvers": "solvers",
    "hwmodels": "hwmodels",
    "app": "mpq/_dashboard",
    "data/devices": "hwmodels/devices",
}

#: Builds the wheel and the editable wheel (what `make demo` installs) with the backend itself, so
#: that its warnings reach the output (pip hides them unless -v).
BUILD = """
import sys
from setuptools import build_meta
build_meta.build_wheel(sys.argv[1])
build_meta.build_editable(sys.argv[2])
"""


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts]


def test_the_wheel_holds_every_shipped_file_and_the_build_is_quiet(tmp_path):
    # A copy: a build in the checkout reuses its build/ folder, whose stale files would ship.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in SHIPPED:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    built = subprocess.run(
        [sys.executable, "-c", BUILD, str(tmp_path / "wheel"), str(tmp_path / "editable")],
        cwd=source,
        capture_output=True,
        text=True,
    )
    output = built.stdout + built.stderr
    assert built.returncode == 0, output
    # setuptools' warnings are classes (BuildBackendWarning: "Package 'mpq._storage.alembic' is
    # absent from the `packages` configuration", SetuptoolsDeprecationWarning...), ~40 lines each.
    assert not re.findall(r"\w+Warning\b.*", output), re.findall(r"\w+Warning\b.*", output)

    (wheel,) = (tmp_path / "wheel").glob("mpq-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    expected = {
        f"{into}/{path.relative_to(ROOT / folder).as_posix()}"
        for folder, into in SHIPPED.items()
        for path in _files(ROOT / folder)
    }
    assert {
        "mpq/_storage/alembic.ini",
        "mpq/_storage/alembic/script.py.mako",
        "mpq/_storage/alembic/env.py",
        "mpq/_storage/alembic/versions/0001_initial.py",
        "mpq/_examples/data/stdlib_sentences.txt",
        "hwmodels/devices/h100-sxm.toml",
        "mpq/_dashboard/streamlit_app.py",
    } <= expected
    assert names - {n for n in names if ".dist-info/" in n} == expected, (
        sorted(expected - names),
        sorted(names - expected),
    )
    assert "mpq = mpq.cli:main" in entry_points


def _make_dry_run(target: str, tmp_path: Path) -> list[str]:
    """The commands ``make TARGET`` runs on a fresh clone (no .venv yet), without running them."""
    if not shutil.which("make"):
        pytest.skip("needs make")
    venv = tmp_path / "fresh-venv"  # absent: every set-up step is due
    done = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout.splitlines()


def _installed_extras(lines: list[str]) -> list[set[str]]:
    """The extras of each ``pip install -e '.[...]'`` line, in order."""
    return [set(m.group(1).split(",")) for line in lines for m in [re.search(r"-e '\.\[([^\]]*)\]'", line)] if m]


def test_make_demo_installs_the_dashboard_only_and_make_test_every_other_extra_saying_so(tmp_path):
    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    demo = _make_dry_run("demo", tmp_path)
    assert _installed_extras(demo) == [{"dashboard"}], demo  # the demo's needs: no PostgreSQL, Dask, selenium...
    test = _make_dry_run("test", tmp_path)
    assert _installed_extras(test) == [{"dashboard"}, extras], test  # then every extra the tests exercise
    for lines in (demo, test):
        # Each install step says what it installs before pip runs.
        steps = [i for i, line in enumerate(lines) if "pip install" in line]
        assert steps and all(lines[i - 1].startswith('echo "make: ') for i in steps), lines

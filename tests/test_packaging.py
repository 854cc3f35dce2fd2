"""A real wheel ships what the checkout keeps outside the packages: device files, migrations,
the dashboard, the example sentences, and the ``mpq`` command; and building it is quiet."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

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

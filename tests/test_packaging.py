"""A real wheel ships what the checkout keeps outside the packages: device files, migrations,
the dashboard, the example sentences, and the ``mpq`` command."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_wheel_holds_every_data_file_and_the_command(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("mpq-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    expected = (
        {f"hwmodels/devices/{p.name}" for p in (ROOT / "data" / "devices").glob("*.toml")}
        | {f"mpq/_storage/alembic/versions/{p.name}" for p in (ROOT / "mpq/_storage/alembic/versions").glob("*.py")}
        | {f"mpq/_dashboard/{p.relative_to(ROOT / 'app')}" for p in (ROOT / "app").rglob("*.py")}
        | {"mpq/_storage/alembic.ini", "mpq/_examples/data/stdlib_sentences.txt"}
    )
    assert len(expected) > 20 and expected <= names, sorted(expected - names)
    assert "mpq = mpq.cli:main" in entry_points

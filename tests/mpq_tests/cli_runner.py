"""``mpq ARGV`` run in the test's process, for the tests of this folder that drive the CLI."""

from mpq.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of ``mpq ARGV``: 0 when it returns without exiting."""
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code or 0
    out, err = capsys.readouterr()
    return code, out, err

"""Running one ``diffusio`` subcommand in-process, and its one-line user errors (shared by the
command-line tests)."""

from diffusio.cli import main


def run_command(capsys, command: str, *args) -> tuple[int, str, str]:
    """``diffusio COMMAND ARGS...``: (exit code, stdout, stderr)."""
    code = main([command, *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(capsys, command: str, *args) -> str:
    """The single ``diffusio: error: ...`` line a bad call prints, with exit code 2."""
    code, _, err = run_command(capsys, command, *args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffusio: error: "), err
    return lines[0]

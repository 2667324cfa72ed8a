"""Shared checks of command-line results (click's CliRunner)."""
from __future__ import annotations


def one_line_error(result, code: int = 1) -> str:
    """Assert a failed command printed exactly one ``Error`` line and no traceback; return it."""
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.stderr
    return errors[0]

"""CI runs exactly the test command that README.md gives."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)


def test_ci_runs_the_readmes_test_command_verbatim():
    test_command = next(c for c in readme_commands() if "pytest" in c)
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_the_readmes_test_command_stops_the_test_bed_and_keeps_pytests_status():
    test_command = next(c for c in readme_commands() if "pytest" in c)
    assert "stop.sh" in test_command and "exit $status" in test_command

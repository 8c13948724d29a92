"""The README's front door stays true: its test command is the one CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _shell_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S)]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    ci_command = [ln for ln in ci.splitlines() if ln.startswith("python3 -m venv")]
    assert len(ci_command) == 1, "the CI script must hold exactly one set-up command"
    assert ci_command[0] in _shell_blocks(readme), "the README's test command differs from .ci/run's"


def test_install_never_asks_for_a_bare_torch_first() -> None:
    # torch==2.13.0 (the local CPU wheel) must be installed before the train/dev extras.
    for block in _shell_blocks((ROOT / "README.md").read_text()):
        if "[dev]" in block or "[train]" in block:
            assert block.index("torch==2.13.0") < block.index(".[")

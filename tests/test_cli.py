"""The istrings command line: help everywhere, config defaults, one-line errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stream.cli import _walk, build_app

ENV = {**os.environ, "COLUMNS": "120", "NO_COLOR": "1"}


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream.cli", *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=120
    )


def _leaf_commands() -> list[tuple[str, ...]]:
    import typer.main

    root = typer.main.get_command(build_app())
    return [path for path, _ in _walk(root, ())]


@pytest.mark.parametrize("path", _leaf_commands(), ids=lambda p: " ".join(p))
def test_every_subcommand_has_help(path: tuple[str, ...]) -> None:
    r = run(*path, "--help")
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout


def test_config_file_sets_defaults_and_show_prints_them(tmp_path: Path) -> None:
    cfg = tmp_path / "istrings.toml"
    cfg.write_text("[config.show]\nas-toml = true\n")
    r = run("--config", str(cfg), "config", "show")
    assert r.returncode == 0, r.stderr
    # the config turned --toml on: TOML output instead of the table
    assert "effective configuration" not in r.stdout
    r = run("config", "show", cwd=tmp_path)  # ./istrings.toml picked up from the working directory
    assert r.returncode == 0 and "effective configuration" not in r.stdout
    r = run("config", "show")  # no config: the table, every value from its default
    assert "effective configuration" in r.stdout and "default" in r.stdout


def test_bad_config_is_one_line_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("this is = = not toml")
    r = run("--config", str(bad), "config", "show")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("istrings: error: config file") and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run("--config", str(tmp_path / "none.toml"), "config", "show")
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_cli_start_does_not_import_torch() -> None:
    code = (
        "import sys; from stream.cli import build_app; build_app(); "
        "bad = [m for m in ('torch', 'training.loop') if m in sys.modules]; print(bad); sys.exit(bool(bad))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr

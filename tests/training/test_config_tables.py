"""Training config files: tables into dataclasses, unknown names refused by name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from training.config_tables import ConfigTableError, dataclass_from, read_tables


@dataclass(frozen=True)
class _Cfg:
    hidden: int = 8
    joints: tuple[int, ...] = (0, 1)


def test_tables_become_dataclasses(tmp_path: Path) -> None:
    f = tmp_path / "run.toml"
    f.write_text("[model]\nhidden = 32\njoints = [3, 4]\n[train]\nbatch-size = 8\n")
    tables = read_tables(f, {"model", "train"})
    assert tables["train"] == {"batch_size": 8}
    assert dataclass_from(_Cfg, tables["model"], "model") == _Cfg(hidden=32, joints=(3, 4))
    assert read_tables(None, {"model"}) == {}


def test_unknown_names_and_bad_files_are_named(tmp_path: Path) -> None:
    f = tmp_path / "run.toml"
    f.write_text("[modle]\nhidden = 3\n")
    with pytest.raises(ConfigTableError, match=r"unknown tables \['modle'\].*known: \['model'\]"):
        read_tables(f, {"model"})
    with pytest.raises(ConfigTableError, match=r"unknown model settings \['hiden'\]; known: \['hidden', 'joints'\]"):
        dataclass_from(_Cfg, {"hiden": 3}, "model")
    f.write_text("not = = toml")
    with pytest.raises(ConfigTableError, match="cannot read training config"):
        read_tables(f, {"model"})

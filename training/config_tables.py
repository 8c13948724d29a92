"""Training configuration files: TOML tables (``[train]``, ``[model]``, ``[task]``, ``[data]``) into
frozen config dataclasses, with every unknown name refused by name. Shared by every model's
``train_*`` entry point."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from stream.errors import IStringsError


class ConfigTableError(IStringsError, ValueError):
    """A training config file is unreadable or names a table or setting that does not exist."""


def read_tables(config: Path | str | None, known: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The tables of a TOML config (dashes in keys become underscores); ``{}`` without a file.

    Raises:
        ConfigTableError: unreadable file, invalid TOML, or a table not in ``known``.
    """
    if config is None:
        return {}
    try:
        raw = tomllib.loads(Path(config).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigTableError(f"cannot read training config {config}: {exc}") from exc
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigTableError(f"unknown tables {sorted(unknown)} in {config}; known: {sorted(known)}")
    return {k: {kk.replace("-", "_"): vv for kk, vv in v.items()} for k, v in raw.items()}


def dataclass_from(cls: Any, values: Mapping[str, Any], where: str) -> Any:
    """Build the dataclass ``cls`` from ``values`` (TOML lists become tuples).

    Raises:
        ConfigTableError: a name that is no field of ``cls`` (the message lists the fields).
    """
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ConfigTableError(f"unknown {where} settings {sorted(unknown)}; known: {sorted(names)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

"""The ``istrings`` command line: one app, each package registering its own commands.

The app itself imports nothing heavy. Each package's commands module (listed in
:data:`COMMAND_MODULES`) registers its subcommands and imports its real work inside the
command bodies, so ``istrings capture`` and ``istrings infer`` never import torch.

Defaults come from a TOML file (``--config PATH``, else ``$ISTRINGS_CONFIG``, else
``./istrings.toml`` when it exists) whose tables are named after the command path::

    [replay]
    speed = 2.0

    [train.nri]
    epochs = 50

Every option is also a flag; ``istrings config show`` prints the effective values.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from stream.errors import IStringsError

log = logging.getLogger("istrings")

# Modules with a ``register(app, groups)`` function; only commands that really work are listed.
COMMAND_MODULES: tuple[str, ...] = (
    "stream.commands.convert",
    "stream.commands.recording",
    "stream.commands.capture",
    "training.commands",
    "training.duet_commands",
    "exporters.commands",
    "inference.commands_clean",
    "inference.commands",
    "stream.commands.synthetic",
    "training.stga_commands",
    "training.mkff_commands",
    "training.report_commands",
)

CONFIG_ENV = "ISTRINGS_CONFIG"
DEFAULT_CONFIG = Path("istrings.toml")


@dataclass(frozen=True)
class Groups:
    """Sub-command groups that several packages add commands to."""

    train: typer.Typer
    eval: typer.Typer
    simulate: typer.Typer
    bench: typer.Typer
    keys: typer.Typer
    config: typer.Typer


def _group(help_text: str) -> typer.Typer:
    return typer.Typer(help=help_text, no_args_is_help=True, add_completion=False)


def load_config(path: Path | None) -> dict[str, Any]:
    """Read the TOML config into a click ``default_map`` (dashes in keys become underscores).

    Raises:
        IStringsError: the file is missing (when named explicitly) or not valid TOML.
    """
    if path is None:
        env = os.environ.get(CONFIG_ENV)
        if env:
            path = Path(env)
        elif DEFAULT_CONFIG.is_file():
            path = DEFAULT_CONFIG
        else:
            return {}
    if not path.is_file():
        raise IStringsError(f"config file {path} does not exist")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise IStringsError(f"config file {path} is not valid TOML: {exc}") from exc

    def norm(d: dict[str, Any]) -> dict[str, Any]:
        return {k.replace("-", "_"): norm(v) if isinstance(v, dict) else v for k, v in d.items()}

    return norm(raw)


def _walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    # Duck-typed: recent typer vendors its own click, so no isinstance checks against click.
    commands = getattr(cmd, "commands", None)
    if isinstance(commands, dict):
        for name, sub in sorted(commands.items()):
            yield from _walk(sub, (*path, name))
    else:
        yield path, cmd


def effective_config(root: Any, default_map: Mapping[str, Any]) -> list[tuple[str, str, Any, str]]:
    """``(command, option, value, origin)`` for every option of every command."""
    rows: list[tuple[str, str, Any, str]] = []
    for path, cmd in _walk(root, ()):
        section: Any = default_map
        for part in path:
            section = section.get(part, {}) if isinstance(section, dict) else {}
        for p in cmd.params:
            if getattr(p, "param_type_name", "") != "option" or p.name in (None, "help"):
                continue
            if isinstance(section, dict) and p.name in section:
                rows.append((" ".join(path), p.name, section[p.name], "config"))
            else:
                default = p.default() if callable(p.default) else p.default
                rows.append((" ".join(path), p.name, default, "default"))
    return rows


def build_app() -> typer.Typer:
    """The full ``istrings`` app with every registered command."""
    app = typer.Typer(
        name="istrings",
        help="Invisible Strings: live inter-dancer strings and pose forecasts, streamed over OSC.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    groups = Groups(
        train=_group("Train a model (NRI, STGA-Net, MKFF) from clips or simulations."),
        eval=_group("Evaluate a trained model; prints JSON."),
        simulate=_group("Generate simulated training data."),
        bench=_group("Benchmarks; each prints one JSON object."),
        keys=_group("ZeroMQ CURVE keys for capture across machines."),
        config=_group("Show the effective configuration."),
    )

    @app.callback()
    def _root(
        ctx: typer.Context,
        config: Annotated[
            Path | None,
            typer.Option("--config", help=f"TOML file of defaults (else ${CONFIG_ENV} or ./istrings.toml)."),
        ] = None,
        verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-vv debug).")] = 0,
    ) -> None:
        level = logging.WARNING - 10 * min(verbose, 2)
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        ctx.default_map = load_config(config)
        ctx.obj = {"config_path": config}

    @groups.config.command("show")
    def _config_show(
        ctx: typer.Context,
        as_toml: Annotated[bool, typer.Option("--toml", help="Print as a TOML file to start a config from.")] = False,
    ) -> None:
        """Print the effective value and origin (default or config) of every option."""
        root = ctx.find_root()
        rows = effective_config(root.command, root.default_map or {})
        if as_toml:
            current = None
            for cmd, opt, value, _ in rows:
                if value is None or cmd.startswith("config"):
                    continue
                if cmd != current:
                    typer.echo(f"\n[{'.'.join(cmd.split())}]")
                    current = cmd
                typer.echo(f"{opt} = {_toml_value(value)}")
            return
        table = Table(title="istrings effective configuration")
        for col in ("command", "option", "value", "from"):
            table.add_column(col)
        for cmd, opt, value, origin in rows:
            table.add_row(cmd, opt, repr(value), origin)
        Console().print(table)

    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(app, groups)

    for name, group in (
        ("train", groups.train), ("eval", groups.eval), ("simulate", groups.simulate),
        ("bench", groups.bench), ("keys", groups.keys), ("config", groups.config),
    ):
        if group.registered_commands or group.registered_groups:
            app.add_typer(group, name=name)
    return app


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line to stderr and return the exit to raise."""
    typer.echo(f"istrings: error: {message}", err=True)
    return typer.Exit(code)


def main() -> None:
    """Console entry point: named errors become one line on stderr and exit code 2."""
    try:
        build_app()(prog_name="istrings")
    except IStringsError as exc:
        typer.echo(f"istrings: error: {exc}", err=True)
        sys.exit(2)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        typer.echo(f"istrings: error: {exc.strerror or exc}: {exc.filename}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("istrings: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()

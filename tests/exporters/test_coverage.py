"""Every model the live path runs can be exported, and its export has a parity test.

The live path loads the kinds of :data:`inference.models_live.MODEL_FILES`. For each one, the
registry must hold an export spec writing that very file, and some test module under
``tests/exporters`` must have a test whose name says ``parity`` and that calls
``validate_export`` (ONNX Runtime vs torch at the spec's validation sizes) with that spec
object — found by reading the test modules' source (``ast``) and resolving the spec argument
through the module's own imports.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from exporters.registry import specs
from exporters.spec import ExportSpec
from inference.models_live import MODEL_FILES

HERE = Path(__file__).resolve().parent
PARITY_CALL = "validate_export"
SPEC_ARG = 2  # validate_export(onnx_path, module, spec, config, ...)


def _imports(tree: ast.Module) -> dict[str, tuple[str, str]]:
    """Local name → (module, attribute) of every ``from module import attribute [as name]``."""
    out: dict[str, tuple[str, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                out[alias.asname or alias.name] = (node.module, alias.name)
    return out


def _spec_arg(call: ast.Call) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == "spec":
            return kw.value
    return call.args[SPEC_ARG] if len(call.args) > SPEC_ARG else None


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def parity_specs(source: str) -> list[tuple[str, Any]]:
    """``(test name, spec object)`` of each ``validate_export`` call inside a parity test of ``source``.

    The spec argument must be a name the module imports (``from exporters.spec_stga import
    STGA``); it is resolved by importing that attribute. Other arguments (a local tiny spec)
    resolve to nothing and are left out.
    """
    tree = ast.parse(source)
    imports = _imports(tree)
    found: list[tuple[str, Any]] = []
    tests = (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_"))
    for test in tests:
        if "parity" not in test.name:
            continue
        for node in ast.walk(test):
            if not isinstance(node, ast.Call) or _callee(node) != PARITY_CALL:
                continue
            arg = _spec_arg(node)
            if isinstance(arg, ast.Name) and arg.id in imports:
                module, attr = imports[arg.id]
                found.append((test.name, getattr(importlib.import_module(module), attr)))
    return found


def parity_tests(files: Iterable[Path]) -> dict[str, list[str]]:
    """Spec name → ``file::test`` of every parity test exercising it, over ``files``."""
    out: dict[str, list[str]] = {}
    for path in files:
        for test, spec in parity_specs(path.read_text(encoding="utf-8")):
            if isinstance(spec, ExportSpec):
                out.setdefault(spec.name, []).append(f"{path.name}::{test}")
    return out


def test_every_live_kind_has_an_export_spec_writing_its_file() -> None:
    registered = specs()
    assert set(MODEL_FILES) == {"nri", "stga", "mkff"}  # the live path's models; a new one needs a spec here
    for kind, filename in MODEL_FILES.items():
        assert kind in registered, f"live model {kind!r} has no export spec in exporters.registry"
        assert f"{registered[kind].name}.onnx" == filename


def test_every_live_kind_has_a_parity_test_with_its_registered_spec() -> None:
    files = sorted(p for p in HERE.glob("test_*.py") if p.name != Path(__file__).name)
    found = parity_tests(files)
    registered = specs()
    for kind in MODEL_FILES:
        assert found.get(kind), f"no parity test under {HERE} calls {PARITY_CALL} with the {kind!r} spec"
    # the calls use the registry's own spec objects, not copies that could drift from it
    for path in files:
        for test, spec in parity_specs(path.read_text(encoding="utf-8")):
            if isinstance(spec, ExportSpec) and spec.name in registered:
                assert spec is registered[spec.name], f"{path.name}::{test} validates a copy of {spec.name!r}"
    assert any(t.startswith("test_export.py::") for t in found["nri"])
    assert any(t.startswith("test_export_stga.py::") for t in found["stga"])
    assert any(t.startswith("test_export_mkff.py::") for t in found["mkff"])


def test_the_scanner_ignores_non_parity_tests_local_specs_and_other_calls() -> None:
    source = '''
from exporters.registry import NRI
from exporters.spec_stga import STGA
from exporters.validate import validate_export

TINY = object()

def test_parity_of_a_tiny_model():
    validate_export(path, module, TINY, config)  # a local spec: not an import

def test_export_runs():
    validate_export(path, module, NRI, config)  # not a parity test

def test_parity_without_validation():
    export_checkpoint(ckpt, STGA, out)  # no validate_export call

def test_stga_parity():
    validate_export(path, module, spec=STGA, model_config=config)

def helper_parity():
    validate_export(path, module, NRI, config)  # not a test
'''
    found = parity_specs(source)
    from exporters.spec_stga import STGA

    assert [(name, spec) for name, spec in found] == [("test_stga_parity", STGA)]

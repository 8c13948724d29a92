"""The export spec of every model that can be exported.

A spec is registered only when the training module that defines its model exists, so the
command line offers exactly the kinds that can really be exported. Today that is the duet NRI
encoder (``nri``); STGA-Net (``stga``) and MKFF-ST-GCN (``mkff``) join when their training
modules land, each with its own spec here.

Importing this module imports neither torch nor the training modules (the command line lists
the kinds at start-up); the training module is located on disk without being executed.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
from collections.abc import Mapping
from typing import Any

from exporters.spec import ExportError, ExportSpec, TensorSpec


def module_exists(dotted: str) -> bool:
    """Whether a module of this project can be found, without importing it or its packages."""
    head, *rest = dotted.split(".")
    spec = importlib.util.find_spec(head)  # a top-level lookup imports nothing
    for part in rest:
        locations = spec.submodule_search_locations if spec is not None else None
        if not locations:
            return False
        spec = importlib.machinery.PathFinder.find_spec(part, list(locations))
    return spec is not None


# ---------------------------------------------------------------------------------------------
# nri: the duet NRI encoder (training/nri/duet.py), window → probabilities of K edge types


def _nri_dims(config: Mapping[str, Any]) -> dict[str, int]:
    """Static axes of the duet NRI encoder from its config (a ``DuetNRIConfig`` as a dict)."""
    from training.duet_data import CandidateGraph  # imports torch: only called at export time

    try:
        graph = CandidateGraph(tuple(config["joints0"]), tuple(config["joints1"]))
        return {
            "T": int(config["window"]),  # frames the encoder sees (its input is T·C per node)
            "N": graph.num_nodes,  # dancer 0's nodes, then dancer 1's
            "C": int(config["in_channels"]),  # position + velocity, normalised
            "E": graph.num_edges,  # every inter-dancer pair, both directions
            "K": int(config["edge_types"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"the config is not a duet NRI config ({exc}); export an 'nri_duet' checkpoint") from exc


NRI = ExportSpec(
    name="nri",
    model_name="nri_duet",
    description=(
        "duet NRI encoder: a normalised window of both dancers (B, T, N, C) → probabilities of "
        "K edge types for every inter-dancer joint pair (B, E, K); type 0 = no string"
    ),
    inputs=(TensorSpec("window", ("B", "T", "N", "C")),),
    outputs=(TensorSpec("edge_probs", ("B", "E", "K")),),
    dynamic={"B": (1, 4096)},
    export_sizes={"B": 2},
    validation_sizes=({"B": 1}, {"B": 3}, {"B": 7}),
    static_dims=_nri_dims,
    submodule="encoder",  # the live path needs deterministic edge probabilities, not Gumbel samples
    head="softmax",  # logits (B, E, K) → probabilities over K
    atol=1e-5,
    rtol=1e-4,
    window_key="window",
    fps_key="fps",
)

from exporters.spec_mkff import MKFF  # noqa: E402  (its spec lives in its own module)
from exporters.spec_stga import STGA  # noqa: E402  (its spec lives in its own module)

_CANDIDATES: tuple[tuple[ExportSpec, str], ...] = (
    (NRI, "training.nri.duet"),
    (MKFF, "training.mkff.model"),
    (STGA, "training.stga.model"),
)


def specs() -> dict[str, ExportSpec]:
    """Every exportable kind whose training module exists, by kind name."""
    return {spec.name: spec for spec, module in _CANDIDATES if module_exists(module)}


def available_kinds() -> tuple[str, ...]:
    """Names of the exportable kinds (``istrings export`` offers these and ``all``)."""
    return tuple(specs())


def get_spec(name: str) -> ExportSpec:
    """The spec of one kind.

    Raises:
        ExportError: no such kind (the message lists the kinds that exist).
    """
    found = specs()
    if name not in found:
        raise ExportError(f"no exportable model {name!r}; exportable: {', '.join(found) or 'none yet'}")
    return found[name]


def spec_for_model(model_name: str) -> ExportSpec:
    """The spec that exports checkpoints of a registry model name (``"nri_duet"`` → ``nri``).

    Raises:
        ExportError: no spec exports that model.
    """
    for spec in specs().values():
        if spec.model_name == model_name:
            return spec
    known = ", ".join(f"{s.model_name} ({s.name})" for s in specs().values()) or "none yet"
    raise ExportError(f"no export spec for checkpoints of model {model_name!r}; exportable models: {known}")

"""``istrings bench models``: the bundled ONNX models against their checkpoints in torch eager.

Runs the real command in a subprocess on the real bundled models (``inference/models``) and
checkpoints (``training/checkpoints``) with few runs: the JSON schema, positive finite
figures, the checkpoint each model was matched to, and the named errors. No time limits here:
the speed goals are the bench's output, not a test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from exporters.bench import BenchModelsError, find_checkpoint, parse_overrides
from inference.metadata import read_metadata
from inference.models_live import DEFAULT_MODELS_DIR, MODEL_FILES

ROOT = Path(__file__).resolve().parents[2]
CHECKPOINTS = ROOT / "training" / "checkpoints"
BUNDLED = sorted(DEFAULT_MODELS_DIR.glob("*.onnx"))


def istrings(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


def positive(x: Any) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    if not BUNDLED:
        pytest.skip(f"no bundled .onnx models in {DEFAULT_MODELS_DIR}")
    r = istrings("bench", "models", "--json", "--runs", "20", "--warmup", "3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout  # one JSON object on one line
    result: dict[str, Any] = json.loads(lines[0])
    return result


@pytest.mark.slow
def test_bench_models_reports_every_bundled_model(report: dict[str, Any]) -> None:
    assert report["threads"] == 1 and report["batch"] == 1 and report["runs"] == 20
    assert isinstance(report["device"], str) and report["device"].startswith("cpu")
    assert set(report["models"]) == {p.stem for p in BUNDLED}
    for kind, m in report["models"].items():
        assert positive(m["ort_ms"]) and positive(m["torch_ms"]) and positive(m["speedup"]), (kind, m)
        assert m["speedup"] == pytest.approx(m["torch_ms"] / m["ort_ms"], rel=1e-2, abs=2e-3)
        i = m["interleaved"]
        assert positive(i["ort_ms"]) and i["speedup"] == pytest.approx(i["torch_ms"] / i["ort_ms"], rel=1e-2, abs=2e-3)
        # the same model on both runtimes: outputs agree (the spec's tolerance is 1e-4 at most)
        assert 0.0 <= m["max_abs_diff"] <= 1e-4, (kind, m["max_abs_diff"])
        meta = read_metadata(DEFAULT_MODELS_DIR / f"{kind}.onnx")
        ckpt = Path(m["checkpoint"])
        assert ckpt.is_file() and ckpt.parent == CHECKPOINTS
        assert m["inputs"]["window"][0] == 1 and m["inputs"]["window"][1] == meta.window_frames
    assert report["models"].get("mkff", {}).get("checkpoint", "mkff_causal.pt").endswith("mkff_causal.pt")


@pytest.mark.slow
def test_bench_models_sums_the_live_models_and_states_the_goals(report: dict[str, Any]) -> None:
    live = [k for k in report["models"] if k in MODEL_FILES]
    assert sorted(report["live_models"]) == sorted(live)
    assert sorted(report["live_models_missing"]) == sorted(set(MODEL_FILES) - set(live))
    total = sum(report["models"][k]["ort_ms"] for k in live)  # the median of the frames' sums is near it
    assert positive(report["live_total_ort_ms"]) and report["live_total_ort_ms"] == pytest.approx(total, rel=0.5)
    assert report["block"] == 100 and "once per frame" in report["method"]
    goals = report["goals"]
    assert goals["speedup_min"] == 3.0 and goals["live_total_ort_ms_max"] == 1.0
    assert goals["live_total_met"] == (report["live_total_ort_ms"] <= 1.0)
    assert goals["speedup_met"] == {k: m["speedup"] >= 3.0 for k, m in report["models"].items()}
    for key in ("load_avg", "load_avg_start"):
        assert len(report[key]) == 3 and all(x >= 0 for x in report[key])


@pytest.mark.slow
def test_a_checkpoint_of_another_model_is_refused_with_one_line() -> None:
    if not (DEFAULT_MODELS_DIR / "stga.onnx").is_file():
        pytest.skip("no bundled stga.onnx")
    r = istrings("bench", "models", "--runs", "1", "-c", f"stga={CHECKPOINTS / 'mkff_causal.pt'}")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"istrings: error: {CHECKPOINTS / 'mkff_causal.pt'} holds a 'mkff' model; stga.onnx is 'stga' (stga)"]


def test_overrides_are_parsed_and_checked(tmp_path: Path) -> None:
    pt = tmp_path / "a.pt"
    pt.write_bytes(b"")
    assert parse_overrides([f"stga={pt}"]) == {"stga": pt}
    with pytest.raises(BenchModelsError, match="takes KIND=PATH"):
        parse_overrides(["stga"])
    with pytest.raises(BenchModelsError, match="names 'stga' twice"):
        parse_overrides([f"stga={pt}", f"stga={pt}"])
    with pytest.raises(BenchModelsError, match="no such file"):
        parse_overrides([f"mkff={tmp_path / 'missing.pt'}"])


def test_the_causal_and_centred_mkff_checkpoints_are_told_apart_by_config() -> None:
    from training.checkpoint import load_checkpoint

    causal, centred = CHECKPOINTS / "mkff_causal.pt", CHECKPOINTS / "mkff_centred.pt"
    if not (causal.is_file() and centred.is_file()):
        pytest.skip("the bundled MKFF checkpoints are missing")
    for path in (causal, centred):
        ckpt = load_checkpoint(path)
        assert find_checkpoint(ckpt.model_name, ckpt.data_id, ckpt.model_config, CHECKPOINTS) == path
    ckpt = load_checkpoint(causal)
    with pytest.raises(BenchModelsError, match=r"several checkpoints .* mkff_causal\.pt, mkff_centred\.pt"):
        find_checkpoint("mkff", ckpt.data_id, {"window": -1}, CHECKPOINTS)
    with pytest.raises(BenchModelsError, match=r"no checkpoint .* data_id 'nope'; pass --checkpoint KIND=PATH"):
        find_checkpoint("mkff", "nope", ckpt.model_config, CHECKPOINTS)

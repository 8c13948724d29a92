"""The integration examples and the OSC docs agree with what the service really sends."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from inference.osc import SCHEMA, OscError, OscSender, encode_names, match, schema_table
from inference.service import InferenceService, ServiceConfig
from stream.skeleton import CANONICAL, J
from tests.inference.test_service import STRONG_FWD, duet_frame, write_nri, write_stga

ROOT = Path(__file__).resolve().parents[2]


def test_docs_table_is_the_schema() -> None:
    doc = (ROOT / "docs" / "osc.md").read_text(encoding="utf-8")
    assert schema_table() in doc, "docs/osc.md's address table differs from inference.osc.SCHEMA: regenerate it"
    documented = set(re.findall(r"^\| `(/istrings[^`]*)`", doc, flags=re.M))
    assert documented == {"/istrings" + s.path for s in SCHEMA}


def test_max_patch_is_valid_json_and_uses_schema_addresses() -> None:
    patch = json.loads((ROOT / "examples" / "istrings_receiver.maxpat").read_text(encoding="utf-8"))
    texts = [b["box"].get("text", "") for b in patch["patcher"]["boxes"]]
    assert any(t.startswith("udpreceive 7000") for t in texts)
    assert any(t.startswith("udpsend 127.0.0.1 7001") for t in texts)
    ids = {b["box"]["id"] for b in patch["patcher"]["boxes"]}
    for line in patch["patcher"]["lines"]:
        assert line["patchline"]["source"][0] in ids and line["patchline"]["destination"][0] in ids
    addresses = {a for t in texts for a in re.findall(r"/istrings/[\w/]+", t)}
    assert {"/istrings/frame", "/istrings/dancer/0/joints", "/istrings/edges/top", "/istrings/names"} <= addresses
    for a in addresses:
        try:
            match(a)
        except OscError:
            match(a, direction="in")  # the names request
    route = next(t for t in texts if t.startswith("route "))
    outlets = next(b["box"]["numoutlets"] for b in patch["patcher"]["boxes"] if b["box"].get("text") == route)
    assert outlets == len(route.split()) - 1 + 1  # one per address, plus the unmatched outlet


def test_touchdesigner_guide_names_real_addresses() -> None:
    guide = (ROOT / "examples" / "touchdesigner.md").read_text(encoding="utf-8")
    found = set(re.findall(r"`(/istrings/[\w/]+)`", guide))
    assert len(found) >= 8
    for a in found:
        match(a)
    assert "OSC In CHOP" in guide and "OSC In DAT" in guide and "Instanc" in guide


@pytest.mark.slow
def test_listener_example_reads_what_the_service_sends(tmp_path: Path) -> None:
    write_nri(tmp_path)
    write_stga(tmp_path)
    svc = InferenceService(ServiceConfig(models_dir=tmp_path, device="cpu"))
    outs = [svc.process(duet_frame(k, k / 30)) for k in range(30)]
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "listener.py"), "--port", str(port), "--json",
                             "--frames", "5", "--timeout", "10", "--request", "127.0.0.1:9"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # the listener binds
        with OscSender([("127.0.0.1", port)]) as osc:
            osc.send([encode_names(CANONICAL.joint_names, svc.horizons_ms)])
            for out in outs[-5:]:
                osc.send(svc.encode(out))
                time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert "not in the schema" not in stderr
    frames = [json.loads(line) for line in stdout.splitlines()]
    assert [f["seq"] for f in frames] == [o.seq for o in outs[-5:]]
    last, sent = frames[-1], outs[-1]
    assert last["names"] == list(CANONICAL.joint_names) and last["horizons"] == [80, 160]
    assert last["status"] == sent.status and last["present"] == 2
    np.testing.assert_allclose(np.array(last["joints"]).reshape(2, J, 3), sent.joints, rtol=1e-6)
    np.testing.assert_allclose(np.array(last["edges"]), sent.strengths, rtol=1e-6)
    assert last["top"][0][:2] == [CANONICAL.joint_names[STRONG_FWD[0]], CANONICAL.joint_names[STRONG_FWD[1]]]
    assert last["forecasts"] == sorted(f"/istrings/forecast/{h}/dancer/{d}" for h in (80, 160) for d in (0, 1))

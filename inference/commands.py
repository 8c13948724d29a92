"""``istrings infer``, ``live``, ``demo`` and ``bench pipeline|service|cache|soak|fuzz|cleaner``.

Nothing heavy is imported at module level: ``istrings infer`` loads numpy, zmq and onnxruntime
inside its body and never torch (``tests/inference/test_live.py`` runs it with torch blocked).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from stream.cli import Groups

log = logging.getLogger(__name__)

_DEFAULT_SUB = "tcp://127.0.0.1:5555"  # stream.transport.DEFAULT_ADDRESS (zmq imported lazily)
_DEFAULT_OSC = "127.0.0.1:7000"  # inference.osc.DEFAULT_OSC
_DEFAULT_LISTEN = "127.0.0.1:7001"  # inference.osc.DEFAULT_LISTEN


# Options several commands share.
_Models = Annotated[Path | None, typer.Option("--models", help="Model folder (default: bundled).")]
_Device = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or tensorrt.")]
_Json = Annotated[bool, typer.Option("--json", help="One line of JSON (default: indented).")]
_Replayed = Annotated[Path | None, typer.Option(
    "--recording", help="Recording to replay (default: the bundled salsa excerpt).")]


def _echo_json(result: dict[str, Any], as_json: bool) -> None:
    typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))


def register(app: typer.Typer, groups: Groups) -> None:
    """Add ``infer``, ``live``, ``demo`` and the ``bench`` commands ``pipeline``, ``service``, ``cache``, ``soak``,
    ``fuzz``, ``cleaner``."""

    @app.command("infer")
    def infer(
        sub: Annotated[str, typer.Option("--sub", help="ZeroMQ address of the capture's PoseFrames.")] = _DEFAULT_SUB,
        osc: Annotated[list[str] | None, typer.Option(
            "--osc", help=f"OSC target HOST:PORT (repeat for several; default {_DEFAULT_OSC}).")] = None,
        models: Annotated[Path | None, typer.Option(
            "--models", help="Folder with nri.onnx / stga.onnx / mkff.onnx (default: the bundled models).")] = None,
        device: Annotated[str, typer.Option("--device", help="ONNX Runtime device: auto, cpu, cuda or tensorrt.")]
        = "auto",
        listen: Annotated[str, typer.Option(
            "--listen", help="HOST:PORT for /istrings/names requests ('' for none; port 0: any free port).")]
        = _DEFAULT_LISTEN,
        prefix: Annotated[str, typer.Option("--prefix", help="OSC address prefix.")] = "/istrings",
        top_k: Annotated[int, typer.Option("--top-k", min=0, help="Strings in /istrings/edges/top.")] = 8,
        combine: Annotated[str, typer.Option(
            "--combine", help="How the two directions of a joint pair combine: max, noisy-or or forward.")] = "max",
        edge_tau: Annotated[float, typer.Option(
            "--edge-tau-s", min=0.0, help="Time constant of the strength smoothing (EMA), seconds; 0: none.")] = 0.25,
        input_timeout: Annotated[float, typer.Option(
            "--input-timeout-s", min=0.01, help="Seconds without a frame before status no-input.")] = 0.5,
        smoothing: Annotated[str, typer.Option(
            "--smoothing", help="Cleaner filter without an MKFF refiner: one_euro, dct or none.")] = "one_euro",
        max_packet: Annotated[int, typer.Option(
            "--max-packet", min=200, max=65507, help="Largest OSC packet, bytes (1472 fits one Ethernet frame).")]
        = 1472,
        nri_interval: Annotated[float | None, typer.Option(
            "--nri-interval-s", min=0.0,
            help="Least seconds between NRI runs (default: one model frame, 1/fps; 0: every frame).")] = None,
        stga_interval: Annotated[float | None, typer.Option(
            "--stga-interval-s", min=0.0,
            help="Least seconds between STGA-Net runs (default: one model frame, 1/fps; 0: every frame).")] = None,
        background_models: Annotated[bool, typer.Option(
            "--background-models/--inline-models",
            help="Above a model's frame rate, run NRI and STGA-Net on a worker thread, not inside the frame.")]
        = True,
        gate_tau: Annotated[float, typer.Option(
            "--gate-tau-s", min=0.0, help="Forgetting time of the forecast gate (blend with the better baseline "
                                          "by recent errors), seconds; 0: no gate, the model's forecasts as they are.")]
        = 3.0,
        log_every: Annotated[float, typer.Option(
            "--log-every-s", min=0.1, help="Seconds between timing log lines (shown with -v).")] = 10.0,
        max_frames: Annotated[int | None, typer.Option("--max-frames", min=1, help="Stop after this many frames.")]
        = None,
        duration: Annotated[float | None, typer.Option("--duration-s", min=0.0, help="Stop after this many seconds.")]
        = None,
        summary: Annotated[Path | None, typer.Option(
            "--summary-json", help="Write the run's summary (counts, timings) to this JSON file at exit.")] = None,
    ) -> None:
        """Run inference: PoseFrames (ZeroMQ) → cleaning → strings (NRI) and forecasts (STGA) → OSC.

        Runs until SIGINT/SIGTERM (or --max-frames / --duration-s). Missing models give status no-model.
        """
        from inference.service import InferenceService, ServiceConfig, osc_targets
        from stream.commands.capture import stop_on_signals
        from stream.transport import check_address

        check_address(sub)
        cfg = ServiceConfig(sub=sub, osc=osc_targets(osc or []), listen=listen, prefix=prefix, models_dir=models,
                            device=device, combine=combine, top_k=top_k, edge_tau_s=edge_tau,
                            input_timeout_s=input_timeout, max_packet=max_packet, log_every_s=log_every,
                            smoothing=smoothing, nri_interval_s=nri_interval, stga_interval_s=stga_interval,
                            background_models=background_models, gate_tau_s=gate_tau or None)
        logging.getLogger("inference").setLevel(min(logging.INFO, logging.getLogger().getEffectiveLevel()))
        service = InferenceService(cfg)
        typer.echo(f"inferring {sub} → OSC {', '.join(cfg.osc)} (models: {service.models.device}; "
                   f"missing: {', '.join(service.models.missing) or 'none'}) (Ctrl-C stops)", err=True)
        with stop_on_signals() as stop:
            result = service.run(stop, max_frames=max_frames, duration_s=duration)
        if summary is not None:
            summary.write_text(json.dumps(result, indent=2), encoding="utf-8")
        typer.echo(f"sent {result['frames']} frames ({result['fps']} fps), skipped {result['skipped']}, dropped "
                   f"{result['dropped']}; added latency p99 {result['added_ms'].get('p99', 0)} ms", err=True)

    @app.command("live")
    def live(
        source: Annotated[str, typer.Option(
            "--source", help="camera:INDEX, video:PATH, images:GLOB, replay:RECORDING or synthetic.")] = "camera:0",
        osc: Annotated[list[str] | None, typer.Option(
            "--osc", help=f"OSC target HOST:PORT (repeatable; default {_DEFAULT_OSC}).")] = None,
        pub: Annotated[str, typer.Option("--pub", help="ZeroMQ address between capture and inference.")]
        = _DEFAULT_SUB,
        models: _Models = None,
        device: _Device = "auto",
        listen: Annotated[str, typer.Option("--listen", help="HOST:PORT for /istrings/names requests.")]
        = _DEFAULT_LISTEN,
        loop: Annotated[bool, typer.Option("--loop", help="Files and recordings: start again at the end.")] = False,
        capture_arg: Annotated[list[str] | None, typer.Option(
            "--capture-arg", help="Extra option passed to `istrings capture` (repeatable, e.g. '--hfov 70').")] = None,
        infer_arg: Annotated[list[str] | None, typer.Option(
            "--infer-arg", help="Extra option passed to `istrings infer` (repeatable, e.g. '--top-k 12').")] = None,
        duration: Annotated[float | None, typer.Option("--duration-s", min=0.0, help="Stop after this many seconds.")]
        = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the supervisor's summary as JSON.")] = False,
    ) -> None:
        """Run capture and inference as two child processes; restart a crashed one with back-off.

        Ctrl-C / SIGTERM stops both cleanly. A source that ends (a file without --loop) ends the run.
        """
        from inference.live import live_children, supervise
        from stream.commands.capture import stop_on_signals

        children = live_children(source, pub=pub, osc=osc or [], models=models, device=device, listen=listen,
                                 loop=loop, capture_args=capture_arg or [], infer_args=infer_arg or [])
        typer.echo(f"live: {source} → {pub} → OSC {', '.join(osc or [_DEFAULT_OSC])} (Ctrl-C stops)", err=True)
        with stop_on_signals() as stop:
            result = supervise(children, stop, duration_s=duration)
        if as_json:
            typer.echo(json.dumps(result))

    @app.command("demo")
    def demo(
        duration: Annotated[float | None, typer.Option(
            "--duration", min=0.0, help="Stop after this many seconds (default: until Ctrl-C).")] = None,
        osc: Annotated[list[str] | None, typer.Option(
            "--osc", help=f"Send the OSC stream to HOST:PORT (repeatable; default {_DEFAULT_OSC}, where a "
            "TouchDesigner or Max patch listens), besides the demo's own listener for the dashboard.",
        )] = None,
        preview: Annotated[Path | None, typer.Option(
            "--preview", help="Write both skeletons with their strings to this .mp4 (mp4v).")] = None,
        models: _Models = None,
        device: _Device = "auto",
        recording: Annotated[Path | None, typer.Option(
            "--recording", help="Recording to play (default: the bundled salsa excerpt).")] = None,
        dashboard: Annotated[bool, typer.Option(
            "--dashboard/--no-dashboard", help="Live terminal dashboard (only on a terminal).")] = True,
        as_json: Annotated[bool, typer.Option("--json", help="Print the final figures as one JSON object.")] = False,
    ) -> None:
        """The bundled salsa duet through capture → inference → OSC, with a live dashboard. No camera needed."""
        from inference.dashboard import run_demo
        from stream.commands.capture import stop_on_signals

        with stop_on_signals() as stop:
            result = run_demo(stop, duration_s=duration, osc=osc or [_DEFAULT_OSC], preview=preview, models=models,
                              device=device, recording=recording, dashboard=dashboard)
        if as_json:
            typer.echo(json.dumps(result))
        else:
            typer.echo(result["text"], err=True)

    @groups.bench.command("pipeline")
    def bench_pipeline(
        recording: _Replayed = None,
        frames: Annotated[int, typer.Option("--frames", min=100, help="Frames to publish.")] = 5000,
        fps: Annotated[float, typer.Option(
            "--fps", min=0.0, help="Capture's publish rate; 0 = closed loop (next frame once the last is out).")] = 0.0,
        flood: Annotated[bool, typer.Option(
            "--flood", help="Capture publishes as fast as it can (capture --fast); --fps is ignored.")] = False,
        models: _Models = None,
        device: _Device = "auto",
        nri_interval: Annotated[float | None, typer.Option(
            "--nri-interval-s", min=0.0, help="Passed to infer (default: one model frame; 0: every frame).")] = None,
        as_json: _Json = False,
    ) -> None:
        """Replay through real processes: capture (ZeroMQ) → infer → OSC → a UDP listener here; latency and fps."""
        from inference.bench import bench_pipeline as run

        _echo_json(run(recording, frames=frames, fps=fps, models=models, device=device, nri_interval_s=nri_interval,
                       flood=flood), as_json)

    @groups.bench.command("service")
    def bench_service(
        recording: _Replayed = None,
        frames: Annotated[int, typer.Option("--frames", min=100, help="Frames timed.")] = 5000,
        fps: Annotated[float, typer.Option("--fps", min=1.0, help="Capture rate the frames are stamped at.")] = 1000.0,
        models: _Models = None,
        device: _Device = "auto",
        gap_ms: Annotated[float, typer.Option(
            "--gap-ms", min=0.0, help="Sleep before each frame, ms (infer waits for its next frame).")] = 0.0,
        as_json: _Json = False,
    ) -> None:
        """The infer service in this process, no sockets: decode, process and encode per frame."""
        from inference.bench import bench_service as run

        _echo_json(run(recording, frames=frames, fps=fps, models=models, device=device, gap_ms=gap_ms), as_json)

    @groups.bench.command("cache")
    def bench_cache(
        sizes_kb: Annotated[list[int] | None, typer.Option(
            "--size-kb", min=1, help="Array size to read, KB (repeat the option; default 256 and 2048).")] = None,
        gaps_ms: Annotated[list[float] | None, typer.Option(
            "--gap-ms", min=0.0, help="Busy gap before a read, ms (repeat; default 0, 1, 4, 16).")] = None,
        repeats: Annotated[int, typer.Option("--repeats", min=1, help="Reads per size and gap.")] = 50,
        as_json: _Json = False,
    ) -> None:
        """How long this machine's caches keep a frame's data while infer waits for the next frame."""
        from inference.bench import bench_cache as run

        _echo_json(run(sizes_kb=tuple(sizes_kb or (256, 2048)), gaps_ms=tuple(gaps_ms or (0.0, 1.0, 4.0, 16.0)),
                       repeats=repeats), as_json)

    @groups.bench.command("soak")
    def bench_soak(
        minutes: Annotated[float, typer.Option("--minutes", min=0.05, help="Length of the run, minutes.")] = 10.0,
        fps: Annotated[float, typer.Option("--fps", min=1.0, help="Publish rate, frames per second.")] = 60.0,
        recording: Annotated[Path | None, typer.Option(
            "--recording", help="Recording to loop (default: the bundled salsa excerpt).")] = None,
        models: _Models = None,
        device: _Device = "auto",
        as_json: _Json = False,
    ) -> None:
        """Loop a recording through the whole pipeline: RSS at start/end, latency p99 per minute, frames lost."""
        from inference.bench import bench_soak as run

        _echo_json(run(minutes=minutes, fps=fps, recording=recording, models=models, device=device), as_json)

    @groups.bench.command("fuzz")
    def bench_fuzz(
        messages: Annotated[int, typer.Option("--messages", min=10, help="Messages to send.")] = 100_000,
        seed: Annotated[int, typer.Option("--seed", help="Hypothesis seed.")] = 0,
        as_json: _Json = False,
    ) -> None:
        """Hypothesis-generated garbage, truncated and wrong-version messages at a running `istrings infer`."""
        from inference.bench import bench_fuzz as run

        _echo_json(run(messages=messages, seed=seed), as_json)

    @groups.bench.command("cleaner")
    def bench_cleaner(
        people: Annotated[int, typer.Option("--people", min=1, max=16, help="People detected per frame.")] = 3,
        frames: Annotated[int, typer.Option("--frames", min=10, help="Frames timed.")] = 3000,
        smoothing: Annotated[str, typer.Option("--smoothing", help="one_euro, dct or none.")] = "one_euro",
        seed: Annotated[int, typer.Option("--seed", help="Seed of the generated frames.")] = 0,
        as_json: _Json = False,
    ) -> None:
        """Time the online cleaner per frame on MediaPipe-33 frames (p50, p99, CPU time)."""
        from inference.cleaning import SMOOTHING_CHOICES, CleaningError
        from inference.cleaning import bench_cleaner as run

        if smoothing not in SMOOTHING_CHOICES:
            raise CleaningError(f"--smoothing must be one of {', '.join(SMOOTHING_CHOICES)}, got {smoothing!r}")
        _echo_json(run(num_people=people, frames=frames, smoothing=smoothing, seed=seed), as_json)  # type: ignore[arg-type]

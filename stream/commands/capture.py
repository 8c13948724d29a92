"""``istrings capture``, ``istrings keys generate``, ``istrings bench capture`` and ``bench placement``.

``capture`` runs the capture process (:mod:`stream.capture`): a source, MediaPipe pose
estimation, placement in one metric frame, PoseFrames published over ZeroMQ. It never imports
torch: everything heavy is imported inside the command bodies, and the capture modules import
only numpy, OpenCV, MediaPipe and pyzmq.
"""

from __future__ import annotations

import json
import logging
import signal
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from stream.cli import Groups
from stream.errors import IStringsError

log = logging.getLogger(__name__)

_DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"  # stream.transport.DEFAULT_ADDRESS (zmq imported lazily)
_FAST_SNDHWM = 100_000  # --fast: queue rather than drop for a subscriber that is briefly behind
FIXTURE_IMAGES = ("basketball1.png", "basketball2.png", "messi5.jpg")


def fixtures_dir() -> Path:
    """``shared/fixtures/images`` beside the repository (the test photographs)."""
    return Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "images"


def write_fixture_video(
    path: Path, images: Sequence[Path], *, repeat: int = 10, fps: float = 30.0, size: tuple[int, int] = (640, 480),
    codec: str = "mp4v",
) -> int:
    """Write a video of ``images`` (each shown ``repeat`` frames, letterboxed to ``size``); returns frames.

    Raises:
        IStringsError: an image cannot be read or OpenCV cannot write the codec.
    """
    import cv2
    import numpy as np

    W, H = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*codec), fps, (W, H))
    if not writer.isOpened():
        raise IStringsError(f"OpenCV cannot write {path} with the {codec} codec")
    n = 0
    try:
        for p in images:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise IStringsError(f"cannot read image {p}")
            s = min(W / img.shape[1], H / img.shape[0])
            small = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)))
            canvas = np.zeros((H, W, 3), np.uint8)
            y0, x0 = (H - small.shape[0]) // 2, (W - small.shape[1]) // 2
            canvas[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
            for _ in range(repeat):
                writer.write(canvas)
                n += 1
    finally:
        writer.release()
    return n


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by the first SIGINT/SIGTERM (a clean stop); a second one interrupts at once."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("signal %d: stopping", signum)
        stop.set()

    old = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _pose_config(
    model: Path | None, num_poses: int, detection: float, presence: float, tracking: float, mode: str
) -> Any:
    from stream.pose import DEFAULT_MODEL, PoseConfig

    return PoseConfig(
        model=model or DEFAULT_MODEL, num_poses=num_poses, min_detection_confidence=detection,
        min_presence_confidence=presence, min_tracking_confidence=tracking, running_mode=mode,  # type: ignore[arg-type]
    )


def register(app: typer.Typer, groups: Groups) -> None:
    """Add ``capture``, ``keys generate``, ``bench capture`` and ``bench placement``."""

    @app.command("capture")
    def capture(
        source: Annotated[str, typer.Option(
            "--source", help="camera:INDEX, video:PATH, images:GLOB, replay:RECORDING or synthetic.")] = "camera:0",
        pub: Annotated[str, typer.Option(
            "--pub", help="ZeroMQ address to publish on; beyond loopback needs --curve-secret/--curve-allow.",
        )] = _DEFAULT_ADDRESS,
        fast: Annotated[bool, typer.Option(
            "--fast", help="Files: every frame, as fast as possible (default: real time, as a camera).")] = False,
        loop: Annotated[bool, typer.Option("--loop", help="Files: start again at the end.")] = False,
        fps: Annotated[float | None, typer.Option(
            "--fps", min=0.1, help="Camera fps to request; pacing of images/synthetic (30); overrides a video's.",
        )] = None,
        width: Annotated[int | None, typer.Option("--width", min=1, help="Camera width to request (px).")] = None,
        height: Annotated[int | None, typer.Option("--height", min=1, help="Camera height to request (px).")] = None,
        pose_model: Annotated[Path | None, typer.Option(
            "--pose-model", help="PoseLandmarker .task bundle (default: the bundled full model).")] = None,
        num_poses: Annotated[int, typer.Option(
            "--num-poses", min=1, max=16, help="Most people per frame (keep one more than the dancers).")] = 3,
        detection_confidence: Annotated[float, typer.Option(
            "--detection-confidence", min=0.0, max=1.0, help="Person detector threshold (0.5 misses people).",
        )] = 0.2,
        presence_confidence: Annotated[float, typer.Option(
            "--presence-confidence", min=0.0, max=1.0, help="Landmark presence threshold.")] = 0.5,
        tracking_confidence: Annotated[float, typer.Option(
            "--tracking-confidence", min=0.0, max=1.0, help="Threshold to keep tracking before re-detecting.",
        )] = 0.5,
        running_mode: Annotated[str, typer.Option(
            "--running-mode", help="MediaPipe running mode: video or live_stream.")] = "video",
        hfov: Annotated[float, typer.Option(
            "--hfov", min=1.0, max=179.0, help="Camera horizontal field of view, degrees (without --calibration).",
        )] = 60.0,
        calibration: Annotated[Path | None, typer.Option(
            "--calibration", help="TOML/JSON with fx, fy, cx, cy, width, height [, camera_height_m, tilt_deg].",
        )] = None,
        camera_height: Annotated[float | None, typer.Option(
            "--camera-height", min=0.01, help="Camera height above the floor, m (default: from the feet).",
        )] = None,
        camera_tilt: Annotated[float, typer.Option(
            "--camera-tilt", min=-89.0, max=89.0, help="Camera pitch, degrees, positive looking down.")] = 0.0,
        placement: Annotated[str, typer.Option(
            "--placement", help="Root translation method: lsq (default) or bones.")] = "lsq",
        preview: Annotated[Path | None, typer.Option(
            "--preview", help="Write the skeletons drawn on the frames to this .mp4 (mp4v).")] = None,
        window: Annotated[bool, typer.Option(
            "--window/--no-window", help="Show a preview window when a display exists.")] = True,
        max_frames: Annotated[int | None, typer.Option(
            "--max-frames", min=1, help="Stop after this many published frames.")] = None,
        wait_subscribers: Annotated[int, typer.Option(
            "--wait-subscribers", min=0, help="Wait for this many subscribers before starting.")] = 0,
        wait_timeout_s: Annotated[float, typer.Option(
            "--wait-timeout-s", min=0.0, help="Give up waiting for subscribers after this many seconds.")] = 30.0,
        curve_secret: Annotated[Path | None, typer.Option(
            "--curve-secret", help="CURVE: the server's .key_secret (turns CURVE on, also on loopback).")] = None,
        curve_allow: Annotated[Path | None, typer.Option(
            "--curve-allow", help="CURVE: directory of allowed clients' public .key files.")] = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic duet.")] = 0,
        as_json: Annotated[bool, typer.Option("--json", help="Print the run's summary as one JSON object.")] = False,
    ) -> None:
        """Capture two dancers and publish PoseFrames (MEDIAPIPE33, placed in one metric frame) over ZeroMQ.

        Runs until the source ends, --max-frames, or SIGINT/SIGTERM. A missing camera is retried forever.
        """
        from stream.capture import run_capture
        from stream.curve import CurveServer, require_curve
        from stream.placement import Camera, PlacementError, Placer
        from stream.pose import PoseEstimator
        from stream.preview import Preview, display_available
        from stream.sources import SourceOptions, open_source, parse_source
        from stream.transport import PUB_SNDHWM, Publisher, TransportError, check_address

        spec = parse_source(source)
        check_address(pub)
        use_curve = require_curve(pub, curve_secret, curve_allow)
        if placement not in ("lsq", "bones"):
            raise PlacementError(f"--placement must be lsq or bones, got {placement!r}")
        cfg = _pose_config(pose_model, num_poses, detection_confidence, presence_confidence, tracking_confidence,
                           running_mode)  # validated even when the source needs no estimator
        cam = Camera.load(calibration) if calibration is not None else None
        if cam is not None and camera_height is not None:
            cam = Camera(cam.fx, cam.fy, cam.cx, cam.cy, cam.width, cam.height, camera_height, cam.tilt_deg)
        logging.getLogger("stream.sources").setLevel(
            min(logging.INFO, logging.getLogger("stream.sources").getEffectiveLevel()))
        options = SourceOptions(fast=fast, loop=loop, fps=fps, width=width, height=height, seed=seed, hfov_deg=hfov)
        with ExitStack() as stack:
            src = stack.enter_context(open_source(spec, options))
            estimator = placer = None
            if src.produces_images:
                estimator = stack.enter_context(PoseEstimator(cfg))
                placer = Placer(cam, hfov_deg=hfov, height_m=camera_height, tilt_deg=camera_tilt,
                                method=placement)  # type: ignore[arg-type]
            configure = context = None
            if use_curve:
                assert curve_secret is not None and curve_allow is not None
                curve = stack.enter_context(CurveServer(curve_secret, curve_allow))
                configure, context = curve.configure, curve.context
            publisher = stack.enter_context(Publisher(
                pub, sndhwm=_FAST_SNDHWM if fast else PUB_SNDHWM, linger_ms=500 if fast else 0,
                configure=configure, context=context))
            shown = stack.enter_context(Preview(preview, fps=src.nominal_fps, window=window)) \
                if preview is not None or (window and display_available()) else None
            stop = stack.enter_context(stop_on_signals())
            typer.echo(f"capturing {src.source_id} → {publisher.address}"
                       f"{' (CURVE)' if use_curve else ''} (Ctrl-C stops)", err=True)
            if wait_subscribers and not publisher.wait_for_subscribers(wait_subscribers, wait_timeout_s):
                raise TransportError(
                    f"only {publisher.subscriptions} of {wait_subscribers} subscribers connected to "
                    f"{publisher.address} within {wait_timeout_s:g} s; start them first or lower --wait-subscribers")
            stats = run_capture(src, publisher.send_raw, estimator=estimator, placer=placer, on_frame=shown,
                                stop=stop, max_frames=max_frames)
            summary = stats.summary(src, placer.unplaced if placer is not None else 0)
        if as_json:
            typer.echo(json.dumps(summary))
        else:
            typer.echo(
                f"published {summary['published']} frames in {summary['elapsed_s']:.1f} s ({summary['fps']} fps); "
                f"{summary['frames_with_two']} with two or more people; {summary['source_dropped']} dropped by "
                f"the source; latency p50 {summary['latency_ms']['p50']} ms, p99 {summary['latency_ms']['p99']} ms",
                err=True)

    @groups.keys.command("generate")
    def keys_generate(
        directory: Annotated[Path, typer.Argument(help="Directory to create the keys in.")],
        client: Annotated[list[str] | None, typer.Option(
            "--client", help="Name of a client key pair to make (repeatable; default: client).")] = None,
    ) -> None:
        """Make CURVE key pairs: the server's, and one per client with its public key in DIR/clients."""
        from stream.curve import generate_keys

        files = generate_keys(directory, tuple(client or ("client",)))
        typer.echo(f"server secret (capture --curve-secret): {files.server_secret}")
        typer.echo(f"server public key (give to every client): {files.server_public}")
        typer.echo(f"allowed clients (capture --curve-allow): {files.allow_dir}")
        for name, path in files.clients.items():
            typer.echo(f"client {name} key pair (copy to that machine only): {path}")

    @groups.bench.command("capture")
    def bench_capture(
        video: Annotated[Path | None, typer.Option(
            "--video", help="Video to run on (default: one built from the test photographs).")] = None,
        fast: Annotated[bool, typer.Option(
            "--fast", help="Every frame as fast as possible (default: real time, dropping like a camera).")] = False,
        repeat: Annotated[int, typer.Option(
            "--repeat", min=1, help="Frames per photograph in the built video.")] = 30,
        as_json: Annotated[bool, typer.Option(
            "--json", help="Print the JSON object on one line (default: indented).")] = False,
    ) -> None:
        """Per-frame pose, placement and publish times, drops, and capture→publish latency on a video."""
        result = _bench_capture(video, fast=fast, repeat=repeat)
        typer.echo(json.dumps(result) if as_json else json.dumps(result, indent=2))

    @groups.bench.command("placement")
    def bench_placement(
        duets: Annotated[int, typer.Option("--duets", min=1, help="Synthetic duets (random placements).")] = 150,
        frames: Annotated[int, typer.Option("--frames", min=1, help="Frames per duet.")] = 4,
        seed: Annotated[int, typer.Option("--seed", help="Seed.")] = 0,
    ) -> None:
        """Root position error (median, p95, cm) of placement on projected synthetic duets at 2-6 m."""
        from stream.placement import measure_error

        typer.echo(json.dumps(measure_error(clips=duets, frames=frames, seed=seed)))


def _bench_capture(video: Path | None, *, fast: bool, repeat: int) -> dict[str, Any]:
    """Run the capture pipeline on a video, publishing to a loopback subscriber; figures as a dict."""
    import numpy as np

    from stream.capture import run_capture
    from stream.placement import Placer
    from stream.pose import PoseConfig, PoseEstimator
    from stream.protocol import decode
    from stream.sources import SourceOptions, VideoSource
    from stream.transport import RECORD_RCVHWM, Publisher, Subscriber

    with tempfile.TemporaryDirectory() as tmp:
        if video is None:
            images = [fixtures_dir() / name for name in FIXTURE_IMAGES]
            if not all(p.is_file() for p in images):
                raise IStringsError(f"test photographs not found in {fixtures_dir()}: pass --video PATH")
            video = Path(tmp) / "fixtures.mp4"
            write_fixture_video(video, images, repeat=repeat)
        received: list[tuple[int, int]] = []  # (t_capture_ns, t_receive_ns)
        done = threading.Event()
        with Publisher("tcp://127.0.0.1:*", sndhwm=_FAST_SNDHWM) as pub, \
                Subscriber(pub.address, rcvhwm=RECORD_RCVHWM) as sub:

            def listen() -> None:
                while not done.is_set() or sub.socket.poll(0):
                    msg = sub.recv(50)
                    if msg is not None:
                        received.append((decode(msg).t_capture_ns, time.monotonic_ns()))

            if not pub.wait_for_subscribers(1, 10.0):
                raise IStringsError("the benchmark's own subscriber did not connect")
            listener = threading.Thread(target=listen, daemon=True)
            listener.start()
            with VideoSource(str(video), SourceOptions(fast=fast)) as src, PoseEstimator(PoseConfig()) as est:
                stats = run_capture(src, pub.send_raw, estimator=est, placer=Placer(), report_every_s=1e9)
            time.sleep(0.2)
            done.set()
            listener.join(timeout=5.0)
            summary = stats.summary(src)
    recv_lat = np.asarray([r - c for c, r in received], np.float64) / 1e6
    overhead = summary["overhead_ms"]
    return {
        "video": str(video), "mode": "fast" if fast else "real time", "video_fps": round(src.nominal_fps, 2),
        "frames_read": summary["frames"], "published": summary["published"], "received": len(received),
        "dropped_by_source": summary["source_dropped"], "lost_in_transport": summary["published"] - len(received),
        "frames_with_two": summary["frames_with_two"], "fps": summary["fps"],
        "pose_ms": summary["pose_ms"], "place_ms": summary["place_ms"], "publish_ms": summary["publish_ms"],
        "capture_to_publish_ms": summary["latency_ms"],
        "capture_to_subscriber_ms": {
            "p50": round(float(np.quantile(recv_lat, 0.5)), 3) if recv_lat.size else None,
            "p99": round(float(np.quantile(recv_lat, 0.99)), 3) if recv_lat.size else None,
        },
        "added_over_pose_ms": overhead,
        "added_over_pose_cpu_ms": summary["overhead_cpu_ms"],
        "goal": {"added_over_pose_p50_ms_below": 0.5, "met_wall": overhead["p50"] < 0.5,
                 "met_cpu": summary["overhead_cpu_ms"]["p50"] < 0.5},
    }

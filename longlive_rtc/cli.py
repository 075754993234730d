"""The composition root: ``longlive-rtc serve | generate | bench | download | schema``.

Every flag has an environment-variable equivalent, named in its help text (``LONGLIVE_RTC_<FLAG>``).
"""

from __future__ import annotations

import argparse
import errno
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("longlive_rtc")

ENV_PREFIX = "LONGLIVE_RTC_"
#: ``--precision`` of the DiT's linears (model/fp8.py's PRECISIONS; the CLI imports no torch to parse flags).
PRECISION_CHOICES = ["bf16", "fp8"]
PRECISION_HELP = "DiT linears: bf16 (exact) or fp8 (approximate, barely faster; see docs/model.md)"
CUDA_GRAPHS_HELP = "replay the DiT's forwards as CUDA graphs (the same kernels; not yet measured: docs/performance.md)"
DESCRIPTION = "Stream LongLive real-time video diffusion over WebRTC, directed by prompts on a frame timeline."
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Libraries whose INFO lines are per request or per ICE check: WARNING unless ``--log-level debug``.
CHATTY_LOGGERS = ("aioice", "aiortc", "aiohttp.access", "httpx", "httpx2")  # httpx*: the Hub client's requests


def bounded(kind: type, low: float, *, strict: bool = False, high: float | None = None, even: bool = False):
    """An argparse ``type``: ``kind`` parsed and checked ``>= low`` (``> low`` when ``strict``), ``<= high`` if
    given, and even if ``even``."""
    relation = ">" if strict else ">="

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if not (value > low if strict else value >= low) or (kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{text!r} must be {relation} {low:g}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text!r} must be <= {high:g}")
        if even and value % 2:
            raise argparse.ArgumentTypeError(f"{text!r} must be even (the video is YUV 4:2:0)")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def byte_size(text: str) -> int:
    """An argparse ``type``: ``500M``, ``10G``, ``1048576`` -> bytes."""
    from .outputs.store import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


byte_size.__name__ = "size"


def bit_rate(text: str) -> int:
    """An argparse ``type``: ``2M``, ``800k`` -> bits per second."""
    from .outputs.encoder import parse_bitrate

    try:
        return parse_bitrate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


bit_rate.__name__ = "bitrate"


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("longlive-rtc")
    except PackageNotFoundError:
        return "unknown (not installed)"


def env_default(name: str, default: object) -> object:
    return os.environ.get(ENV_PREFIX + name.upper().replace("-", "_"), default)


def add_option(parser: argparse.ArgumentParser, flag: str, default: object = None, **kwargs) -> None:
    """Add ``--flag`` whose default comes from ``LONGLIVE_RTC_FLAG`` when set."""
    env = ENV_PREFIX + flag.upper().replace("-", "_")
    help_text = kwargs.pop("help", "")
    kwargs.setdefault("default", env_default(flag, default))
    parser.add_argument(f"--{flag}", help=f"{help_text} [env {env}; default {default}]", **kwargs)


def add_switch(parser: argparse.ArgumentParser, flag: str, help_text: str) -> None:
    """Add the on/off ``--flag``, also on when ``LONGLIVE_RTC_FLAG`` is set to anything but 0, false or no."""
    env = ENV_PREFIX + flag.upper().replace("-", "_")
    on = os.environ.get(env, "").lower() not in ("", "0", "false", "no")
    parser.add_argument(f"--{flag}", action="store_true", default=on, help=f"{help_text} [env {env}=1]")


def add_generator_options(parser: argparse.ArgumentParser) -> None:
    from .generators.base import Geometry

    add_option(parser, "generator", "synthetic", choices=["synthetic", "longlive"], help="video generator")
    add_option(parser, "width", Geometry.width, type=bounded(int, 16, even=True), help="frame width in pixels (even)")
    add_option(
        parser, "height", Geometry.height, type=bounded(int, 64, even=True), help="frame height in pixels (even)"
    )
    add_option(parser, "weights", "weights", help="LongLive weights directory (see `longlive-rtc download`)")
    add_option(parser, "decoder", "wan", choices=["wan", "tae"], help="latent decoder: Wan VAE or TAEHV (faster)")
    add_option(parser, "t5-device", "cuda", choices=["cuda", "cpu"], help="where the text encoder runs")
    add_option(parser, "device", "cuda", help="torch device of the DiT and decoder")
    add_option(parser, "decoder-device", None, help="another device for the decoder (latents copied over per block)")
    parser.add_argument(
        "--random-weights", action="store_true", help="full-size model with random weights (benchmarks, no files)"
    )
    add_option(parser, "compile", "auto", choices=["auto", "on", "off"], help="torch.compile the DiT")
    add_option(parser, "cuda-graphs", "off", choices=["on", "off"], help=CUDA_GRAPHS_HELP)
    add_option(parser, "precision", "bf16", choices=PRECISION_CHOICES, help=PRECISION_HELP)
    add_option(parser, "block-ms", 0, type=bounded(float, 0), help="synthetic: least ms per block (TAE ~310, VAE ~420)")
    add_option(parser, "switch-ms", 0, type=bounded(float, 0), help="synthetic: ms a recache adds (LongLive ~100)")


def build_generator(args: argparse.Namespace, warm: bool = True):
    """The generator the flags ask for, with a clear message when it cannot be built; LongLive warmed up on
    this thread unless ``warm`` is False (``serve`` warms it up on its GPU worker's thread instead)."""
    from .generators import Geometry, SyntheticGenerator

    geometry = Geometry(width=int(args.width), height=int(args.height))
    if args.generator == "synthetic":
        return SyntheticGenerator(geometry, block_ms=float(args.block_ms), switch_ms=float(args.switch_ms))
    return build_longlive_generator(args, geometry, warm)


def build_longlive_generator(args: argparse.Namespace, geometry, warm: bool = True):
    """``--generator longlive``: random weights for benchmarks, else the official files in ``--weights``; the
    decoder placed, compiled and (``warm``) warmed up as the flags say."""
    try:
        import torch

        from .generators.longlive import (
            LongLiveGenerator,
            enable_compile,
            enable_cuda_graphs,
            random_longlive,
            use_precision,
            warm_up,
        )
        from .model import MissingWeightsError, build_longlive
    except ImportError as exc:
        raise SystemExit(f"the longlive generator is not available in this build: {exc}") from None
    if not torch.cuda.is_available() and str(args.device).startswith("cuda"):
        raise SystemExit("error: the longlive generator needs a CUDA GPU (or use --generator synthetic)")
    if args.cuda_graphs == "on" and not str(args.device).startswith("cuda"):  # before minutes of loading
        raise SystemExit(f"error: --cuda-graphs on needs a CUDA --device, not {args.device}")
    torch.backends.cudnn.benchmark = True  # the Wan VAE's 3D convolutions: autotuned once, during warm-up
    if args.random_weights:
        log.warning("longlive with RANDOM weights: the video is noise; for benchmarks only")
        generator = random_longlive(args.device, args.decoder)
    else:
        try:
            longlive = build_longlive(
                args.weights, device=args.device, decoder=args.decoder, text_encoder_device=args.t5_device
            )
        except MissingWeightsError as exc:
            raise SystemExit(f"error: {exc}") from None
        generator = LongLiveGenerator(longlive.pipeline, longlive.text_encoder, longlive.decoder)
    if (generator.geometry.width, generator.geometry.height) != (geometry.width, geometry.height):
        log.info("longlive renders %dx%d", generator.geometry.width, generator.geometry.height)
    if getattr(args, "decoder_device", None):  # the decoder on its own device (generators/handover.py)
        from .generators.handover import place_decoder

        place_decoder(generator, args.decoder_device)
    try:
        use_precision(generator, args.precision)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.compile in ("on", "auto") and generator.device.type == "cuda":
        enable_compile(generator)
    elif args.precision == "fp8":
        log.warning(
            "--precision fp8 uncompiled: each activation is quantized by separate kernels (compiled, they fuse)"
        )
    if args.cuda_graphs == "on":  # a non-CUDA --device was refused above
        enable_cuda_graphs(generator)
    if warm:
        warm_up_reporting(args.decoder, lambda: warm_up(generator, report=print_indented))
    return generator


def print_indented(line: str) -> None:
    print("  " + line, flush=True)


def warm_up_reporting(decoder: str, run: Callable[[], float]) -> None:
    """Run a warm-up (``run``: its seconds) between a start and an end line on the console."""
    print(f"warming up LongLive ({decoder} decoder)...", flush=True)
    print(f"warm-up done in {run():.1f} s", flush=True)


def longlive_worker(args: argparse.Namespace):
    """``serve --generator longlive``: one GPU worker thread owns the device, the model warmed up on it (cuDNN's
    tuned plans are per thread); every session is a stream on it."""
    from .generators.gpu_worker import GpuWorker

    worker = GpuWorker(build_generator(args, warm=False))
    warm_up_reporting(args.decoder, lambda: worker.warm_up(report=print_indented))
    return worker


def output_problem(out: Path) -> str | None:
    """Why ``generate`` cannot write ``out`` (checked before any frame is generated), or None."""
    if out.suffix.lower() != ".mp4":
        return f"--out {out}: generate writes H.264 MP4 only; give a path ending in .mp4"
    if not out.parent.is_dir():
        return f"--out {out}: the directory {out.parent} does not exist (create it first)"
    if not os.access(out.parent, os.W_OK):
        return f"--out {out}: the directory {out.parent} is not writable"
    return None


def cmd_generate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .render import render_to_mp4
    from .schedule_file import ScheduleFileError, load_schedule_file

    try:
        entries = load_schedule_file(Path(args.schedule))
    except ScheduleFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    problem = output_problem(Path(args.out))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    generator = build_generator(args)
    frames = math.ceil(args.frames / generator.geometry.frames_per_block) * generator.geometry.frames_per_block
    expected_video = generator.geometry.video_frames_before(frames)
    with tqdm(total=expected_video, unit="frame", desc="rendering", file=sys.stderr) as bar:
        written = render_to_mp4(
            generator, entries, frames, Path(args.out), seed=args.seed,
            on_block=lambda _f, video: bar.update(video - bar.n),
        )  # fmt: skip
    made_by = " by the synthetic generator (procedural video, no model)" if args.generator == "synthetic" else ""
    prompts = "1 prompt" if len(entries) == 1 else f"{len(entries)} prompts"
    print(f"wrote {args.out}: {written} video frames ({frames} generation frames, {prompts}){made_by}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from signaling.routes import HTTP_MARKDOWN

    from .protocol import json_schema_text, render_markdown

    print(render_markdown(HTTP_MARKDOWN) if args.markdown else json_schema_text())
    return 0


def parse_ice_servers(urls: Sequence[str], username: str | None, credential: str | None) -> list:
    """ICE servers from ``stun:``/``turn:``/``turns:`` URLs; TURN ones get the username and credential."""
    from aiortc import RTCIceServer

    servers = []
    for url in urls:
        if not url.startswith(("stun:", "turn:", "turns:")):
            raise SystemExit(f"error: ICE server {url!r} must start with stun:, turn: or turns:")
        if url.startswith("turn"):
            if not (username and credential):
                raise SystemExit(f"error: TURN server {url} needs --ice-username and --ice-credential")
            servers.append(RTCIceServer(urls=url, username=username, credential=credential))
        else:
            servers.append(RTCIceServer(urls=url))
    return servers


def default_max_sessions(generator: str) -> int:
    """One generation slot for LongLive (one GPU, ``--device``), one per CPU core for the synthetic one."""
    return 1 if generator == "longlive" else max(1, os.cpu_count() or 1)


def local_address() -> str:
    """This machine's outward address, for the URL to open (no packet is sent)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
            return probe.getsockname()[0]
        except OSError:
            return "127.0.0.1"


def serve_banner(args: argparse.Namespace, config, auth) -> str:
    """What ``serve`` prints: generator, slots, access mode and the URL to open.

    A generated API key is printed in the URL (as Jupyter does); one the operator set is not repeated.
    """
    host = "localhost" if args.host in ("0.0.0.0", "::") else args.host
    shown = local_address() if args.host in ("0.0.0.0", "::") else host
    api_key = auth.api_key if auth.enabled else None
    key = "" if not api_key else "?token=<your API key>" if args.api_key else f"?token={api_key}"
    lines = [f"longlive-rtc: {args.generator} generator, codec {config.codec}, {config.max_sessions} session slot(s)"]
    if args.generator == "synthetic":
        lines.append("  (synthetic generator: procedural video, no GPU or model weights used)")
    if api_key:
        lines.append("  access: token (the API key below creates and lists sessions; keep it secret)")
    else:
        lines.append("  access: NONE (--auth none): anyone who can reach this port controls every stream")
    here = "" if shown == host else f" (or http://{host}:{args.port}/{key} here)"
    lines.append(f"  open http://{shown}:{args.port}/{key} in a browser{here}")
    return "\n".join(lines)


def listen_problem(host: str, port: int) -> str | None:
    """Why ``serve`` could not listen on ``host:port`` (a trial bind, before any model loads), or None."""
    import socket

    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    for family, kind, proto, _name, address in addresses:
        with socket.socket(family, kind, proto) as trial:
            trial.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
            try:
                trial.bind(address)
            except OSError as exc:
                hint = "; is another server running? choose another --port" if exc.errno == errno.EADDRINUSE else ""
                return f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}"
    return None


def device_pool(args: argparse.Namespace, config):
    """``serve --devices`` (and LongLive on its one ``--device``): a DevicePool (every device loaded now),
    ``config.max_sessions`` made the slots of all."""
    from .generators.devices import DevicePool, parse_devices

    try:
        names = parse_devices(args.devices or args.device)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    slots = int(args.max_sessions or default_max_sessions(args.generator))

    def open_device(name: str):
        own = argparse.Namespace(**vars(args))
        own.device = name
        if own.t5_device == "cuda":
            own.t5_device = name  # umT5 beside its DiT, not on cuda:0 for every device
        if args.generator == "longlive":
            return longlive_worker(own).session
        spare = [build_generator(own)]
        return lambda: spare.pop() if spare else build_generator(own)

    pool = DevicePool(names, slots, open_device)
    try:
        pool.open_all()
    except RuntimeError as exc:
        raise SystemExit(f"error: {exc}") from None
    config.max_sessions = pool.capacity
    return pool


def one_device_generators(args: argparse.Namespace):
    """``serve`` of a generator other than LongLive without ``--devices``: the hub's generator factory and
    release. The first generator is built now (fail fast, before listening); a freed session hands its
    generator back for the next one."""
    spare = [build_generator(args)]

    def factory():
        return spare.pop() if spare else build_generator(args)

    return factory, spare.append


def cmd_serve(args: argparse.Namespace) -> int:
    from aiohttp import web

    from signaling.app import HTTP_SERVER, create_app
    from signaling.auth import Auth
    from signaling.limits import RateLimiter

    from .outputs.manager import OutputsConfig
    from .rtc.hub import Hub, HubConfig
    from .rtc.memory import map_large_blocks

    map_large_blocks()  # frames and encoder buffers go back to the system when viewers leave

    ice_urls = list(args.ice_server or [])
    if not ice_urls and os.environ.get(ENV_PREFIX + "ICE_SERVERS"):
        ice_urls = [u.strip() for u in os.environ[ENV_PREFIX + "ICE_SERVERS"].split(",") if u.strip()]
    cors = list(args.cors_origin or [])
    if not cors and os.environ.get(ENV_PREFIX + "CORS_ORIGINS"):
        cors = [u.strip() for u in os.environ[ENV_PREFIX + "CORS_ORIGINS"].split(",") if u.strip()]
    allowed_hosts = list(args.allowed_host or [])
    if not allowed_hosts and os.environ.get(ENV_PREFIX + "ALLOWED_HOSTS"):
        allowed_hosts = [h.strip() for h in os.environ[ENV_PREFIX + "ALLOWED_HOSTS"].split(",") if h.strip()]
    config = HubConfig(
        codec=args.codec,
        ice_servers=parse_ice_servers(ice_urls, args.ice_username, args.ice_credential),
        max_sessions=int(args.max_sessions or default_max_sessions(args.generator)),
        max_peers_per_session=int(args.max_peers_per_session),
        max_peers=int(args.max_peers),
        session_idle=float(args.session_idle),
        buffer_blocks=int(args.buffer_blocks),
        late_binding=args.late_binding == "on",
        live_switch=args.live_switch,
        stamp_frames=args.stamp_frames,
    )
    if args.auth not in ("token", "none"):
        raise SystemExit("error: --auth must be 'token' or 'none'")
    auth = Auth(args.auth, args.api_key or None, token_ttl=float(args.token_ttl))
    if args.reactor_local and auth.enabled:
        raise SystemExit("error: --reactor-local needs --auth none (the Reactor SDK's local mode sends no token)")
    limiter = RateLimiter(per_minute=float(args.rate_limit), burst=int(args.rate_burst))
    problem = listen_problem(args.host, int(args.port))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    if args.devices or args.generator == "longlive":
        # one GPU worker per device, --max-sessions slots on each (generators/devices.py); LongLive on its one
        # --device too, so that /health and /metrics show a failed or hung GPU
        devices = device_pool(args, config)
        hub = Hub(devices, config, release=devices.release, report=devices.report)
    else:
        factory, release = one_device_generators(args)
        hub = Hub(factory, config, release=release)
    outputs = OutputsConfig(
        Path(args.recordings_dir),
        args.recordings_quota,
        float(args.clip_seconds),
        bitrate=args.bitrate,
        encode_once=args.encode_once,
        whip_private=args.whip_private,
    )
    app = create_app(
        hub, auth, cors_origins=cors, limiter=limiter, reactor_local=args.reactor_local, allowed_hosts=allowed_hosts,
        outputs=outputs, state_dir=Path(args.state_dir),
    )  # fmt: skip
    print(serve_banner(args, config, auth), flush=True)
    if args.reactor_local:
        print(f"  Reactor SDK local mode on: new Reactor({{modelName: 'longlive', local: true}}) (port {args.port})")
    try:
        web.run_app(app, host=args.host, port=int(args.port), print=None, **HTTP_SERVER)
    except OSError as exc:  # the port was taken between the trial bind and now
        if exc.errno not in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    return bench_main(args)


def cmd_download(args: argparse.Namespace) -> int:
    from huggingface_hub.utils import logging as hub_logging

    from .model.download import DownloadError, download_weights

    hub_logging.disable_propagation()  # its warnings through its own handler only, not twice
    try:
        download_weights(Path(args.dir), include_tae=not args.no_tae, force=args.force)
    except DownloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="longlive-rtc",
        description=DESCRIPTION,
        epilog="Run `longlive-rtc <command> --help` for a command's flags and examples.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    add_option(parser, "log-level", "INFO", type=str.upper, choices=LOG_LEVELS, help="logging level")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    def command(name: str, summary: str, examples: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=summary, description=summary[:1].upper() + summary[1:] + ".",
            epilog="examples:\n" + examples, formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        sub.add_argument(  # also accepted after the command; the one before it is the default
            "--log-level", type=str.upper, choices=LOG_LEVELS, default=argparse.SUPPRESS, help="logging level"
        )
        return sub

    generate = command(
        "generate",
        "render a prompt schedule offline to an MP4",
        "  longlive-rtc generate --schedule schedule.json --frames 120 --out video.mp4\n"
        "  longlive-rtc generate --schedule schedule.json --frames 600 --out video.mp4 --generator longlive\n",
    )
    generate.add_argument(
        "--schedule",
        required=True,
        help='JSON array of {"timestamp": int, "prompt": str, "transition"?}: the director\'s export (a recording\'s '
        "JSON or a saved state also do)",
    )
    generate.add_argument(
        "--frames", type=bounded(int, 1), required=True, help="generation frames (rounded up to whole blocks)"
    )
    generate.add_argument("--out", required=True, help="output path ending in .mp4 (its directory must exist)")
    add_option(generate, "seed", 0, type=bounded(int, 0), help="random seed")
    add_generator_options(generate)
    generate.set_defaults(func=cmd_generate)

    serve = command(
        "serve",
        "run the WebRTC server: director, viewer and OBS pages, HTTP API, WHEP",
        "  longlive-rtc serve                                  # synthetic generator, token access\n"
        "  longlive-rtc serve --auth none --port 9000          # trusted LAN, no tokens\n"
        "  longlive-rtc serve --generator longlive --weights weights --decoder tae\n",
    )
    add_option(serve, "host", "0.0.0.0", help="address to listen on")
    add_option(serve, "port", 8080, type=bounded(int, 1, high=65535), help="HTTP port")
    add_option(serve, "codec", "vp8", choices=["vp8", "h264"], help="video codec")
    serve.add_argument(
        "--ice-server",
        action="append",
        help="STUN/TURN URL, repeatable [env LONGLIVE_RTC_ICE_SERVERS, comma-separated]",
    )
    add_option(serve, "ice-username", None, help="TURN username")
    add_option(serve, "ice-credential", None, help="TURN credential")
    add_option(
        serve,
        "max-sessions",
        None,
        type=bounded(int, 1),
        help="generation slots (default: 1 for longlive, CPU cores for synthetic); longlive with N > 1 shares "
        "one GPU and one copy of the weights among N streams",
    )
    add_option(
        serve, "devices", None,
        help="cuda:0,cuda:1,... or all: one GPU worker per device (weights loaded once each), --max-sessions "
        "slots per device, a session on the device with the most free slots (docs/deploying.md)",
    )  # fmt: skip
    add_option(
        serve,
        "session-idle",
        600.0,
        type=bounded(float, 0),
        help="seconds a session with no peer that is not running lives on",
    )
    add_option(serve, "max-peers", 64, type=bounded(int, 1), help="peers of all sessions together")
    add_option(serve, "max-peers-per-session", 16, type=bounded(int, 1), help="peers of one session")
    add_option(serve, "auth", "token", choices=["token", "none"], help="access control ('none': a trusted LAN)")
    add_option(serve, "api-key", None, help="API key (default: a new one, printed in the startup URL)")
    add_option(
        serve, "token-ttl", 0.0, type=bounded(float, 0), help="seconds a session token stays valid (0: no expiry)"
    )
    serve.add_argument(
        "--cors-origin",
        action="append",
        help="origin allowed to call the API from its pages, repeatable [env LONGLIVE_RTC_CORS_ORIGINS, comma-list]",
    )
    serve.add_argument(
        "--allowed-host",
        action="append",
        help="with --auth none: a host name the server answers for besides IP addresses and localhost, repeatable "
        "[env LONGLIVE_RTC_ALLOWED_HOSTS, comma-list]",
    )
    add_option(
        serve,
        "rate-limit",
        60.0,
        type=bounded(float, 0, strict=True),
        help="sessions/offers per minute per client address",
    )
    add_option(serve, "rate-burst", 30, type=bounded(int, 1), help="sessions/offers at once per client address")
    add_option(serve, "buffer-blocks", 1, type=bounded(int, 1), help="blocks buffered ahead of playback")
    add_option(
        serve, "late-binding", "on", choices=["on", "off"], help="start blocks just in time (off: as early as they can)"
    )
    add_option(
        serve,
        "live-switch",
        "asap",
        choices=["asap", "block-end"],
        help="a live prompt's block airs as soon as it is generated, skipping the rest of the block on air "
        "(asap; on a GPU other sessions share at the moment, block-end), or when that block ends (block-end: "
        "nothing skipped, up to a block later)",
    )
    add_option(serve, "recordings-dir", "recordings", help="where recordings and clips go (docs/outputs.md)")
    add_option(
        serve, "state-dir", "state",
        help="where the server keeps what must outlive a restart: which session tokens were retired",
    )  # fmt: skip
    add_option(serve, "recordings-quota", "10G", type=byte_size, help="room for all recordings and clips (K/M/G/T)")
    add_option(
        serve, "clip-seconds", 30.0, type=bounded(float, 0),
        help="seconds of encoded video each session keeps for clips (0: no clips, no encoding until asked)",
    )  # fmt: skip
    add_option(
        serve, "bitrate", "2M", type=bit_rate,
        help="the shared H.264 encode's bitrate (recordings, clips, stream.ts, --encode-once viewers), e.g. 800k",
    )  # fmt: skip
    add_switch(serve, "encode-once", "H.264 viewers share the session's one encode (no per-viewer bitrate; "
               "docs/outputs.md)")  # fmt: skip
    add_switch(serve, "whip-private", "let WHIP outputs push to private, loopback and link-local addresses, e.g. "
               "a MediaMTX beside the server (a controller token can then reach this network)")  # fmt: skip
    add_switch(serve, "stamp-frames", "stamp each frame on air with its index and prompt number (latency probes: "
               "benchmarks/switch_latency.py)")  # fmt: skip
    add_switch(serve, "reactor-local", "also serve the Reactor JS SDK's local-mode API, unauthenticated: needs "
               "--auth none (docs/reactor-sdk.md)")  # fmt: skip
    add_generator_options(serve)
    serve.set_defaults(func=cmd_serve)

    bench = command(
        "bench",
        "GPU benchmark of the full-size model (random weights, no files needed)",
        "  longlive-rtc bench\n  longlive-rtc bench --decoders tae --blocks 24 --json bench.json\n"
        "  longlive-rtc bench --devices cuda:0,cuda:1 --sessions 4 --decoders wan\n"
        "  longlive-rtc bench --decoders wan --decoder-device cuda:1\n",
    )
    bench.add_argument(
        "--decoders", nargs="+", default=["wan", "tae"], choices=["wan", "tae"], help="decoders to measure, in turn"
    )
    bench.add_argument("--blocks", type=bounded(int, 1), default=12, help="blocks per run")
    bench.add_argument("--runs", type=bounded(int, 1), default=3, help="runs (medians are reported)")
    bench.add_argument(
        "--sessions",
        nargs="+",
        type=bounded(int, 1),
        help="also run this many streams at once (one GPU worker per device, shared weights), e.g. --sessions 1 2 3",
    )
    bench.add_argument(
        "--devices",
        help="cuda:0,cuda:1,... or all: --sessions placed over these devices as serve --devices places them",
    )
    bench.add_argument(
        "--decoder-device", help="also measure with the decoder on this device, against the same-device figure"
    )
    bench.add_argument(
        "--tiny", action="store_true", help="tiny random configs (CPU devices allowed): checks the bench itself"
    )
    add_option(bench, "compile", "on", choices=["on", "off"], help="torch.compile the DiT blocks")
    add_option(bench, "cuda-graphs", "off", choices=["on", "off"], help=CUDA_GRAPHS_HELP)
    add_option(bench, "precision", "bf16", choices=PRECISION_CHOICES, help=PRECISION_HELP)
    bench.add_argument("--no-t5", dest="with_t5", action="store_false", help="leave the umT5 encoder out")
    bench.add_argument("--json", help="also write the results to this JSON file")
    bench.set_defaults(func=cmd_bench)

    download = command(
        "download",
        "fetch the official LongLive weights from the Hugging Face Hub",
        "  longlive-rtc download --dir weights\n  longlive-rtc download --dir weights --no-tae\n",
    )
    add_option(download, "dir", "weights", help="destination directory")
    download.add_argument("--no-tae", action="store_true", help="skip the TAEHV decoder weights")
    download.add_argument("--force", action="store_true", help="download again even when present")
    download.set_defaults(func=cmd_download)

    schema = command(
        "schema",
        "print the data-channel protocol's JSON Schema",
        "  longlive-rtc schema > protocol.schema.json\n  longlive-rtc schema --markdown > docs/protocol.md\n",
    )
    schema.add_argument("--markdown", action="store_true", help="print docs/protocol.md instead")
    schema.set_defaults(func=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = str(args.log_level).upper()
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet = logging.DEBUG if level == "DEBUG" else max(logging.WARNING, logging.getLevelName(level))
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

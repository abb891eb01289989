"""``emotion-detector edge --source SOURCE --mqtt mqtt://host:1883 --device-id ID`` (DESIGN.md §2 "Edge"): the
pipeline in this process over a camera, a stream or a video file, in live mode at the source's pace (a file is
played at its frame rate; frames that come while one is analysed are dropped), and the events published over
MQTT through a bounded on-disk queue. Runs while the broker is away; ends with the source, on Ctrl-C or on
SIGTERM (cleanly: the open tracks end, the queue gets a few seconds, the status goes ``offline``).

``emotion-detector edge --retire --device-id ID --mqtt ...`` forgets a device that is gone for good: its retained
status, view and Home Assistant discovery configs are cleared (Home Assistant then removes the device).

Exit 0 when the source ended or on SIGTERM, 2 on bad input (a clear one-line message), 1 when the models cannot
be loaded, 130 on Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from emotion_detector.analyze_cli import positive_int
from emotion_detector.edge.messages import DEVICE_ID_PATTERN
from emotion_detector.edge.options import add_broker_arguments

if TYPE_CHECKING:  # the models, OpenCV, FFmpeg and paho load when the command runs, not for --help
    from emotion_detector.analyze_api import Analyzer
    from emotion_detector.edge.events import TrackEvents
    from emotion_detector.edge.mqtt import Broker
    from emotion_detector.edge.publisher import Publisher
    from emotion_detector.edge.view import ViewSummary
    from emotion_detector.sources import Source

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_QUEUE_MAX_EVENTS = 10_000  # about 10 MB at most: events are small (< 8 KB, usually about 600 bytes)

log = logging.getLogger("emotion_detector.edge")


class _Terminated(Exception):
    """SIGTERM (a service manager stopping the device): stop as cleanly as on Ctrl-C."""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "edge",
        help="analyse a camera, stream or video at its pace and publish face events over MQTT",
        description="Runs the models in this process over SOURCE (a camera index, an rtsp:// or http(s):// stream, or a "
        "video file, played at its frame rate) and publishes, under emotion-detector/ID/, a retained status and one "
        "event per face track per interval, and what it sees now (retained, with Home Assistant discovery configs "
        "unless EMOTION_HA_DISCOVERY=false). While the broker is unreachable, events wait in a bounded queue on disk.",
    )
    parser.add_argument("--source", help="a camera index (0), an rtsp:// or http(s):// stream, or a video file (required)")
    add_broker_arguments(parser)
    parser.add_argument("--device-id", required=True, metavar="ID", help="this device's name in topics: letters, digits, _ . -")
    parser.add_argument("--interval-s", type=_positive_float, default=1.0, help="at most one update per face track this often (default 1)")
    parser.add_argument("--queue-path", type=Path, help="the on-disk event queue (default: EMOTION_INSTANCE_DIR/edge-ID.sqlite3)")
    parser.add_argument(
        "--queue-max-events",
        type=positive_int,
        default=DEFAULT_QUEUE_MAX_EVENTS,
        metavar="N",
        help="beyond N waiting events the oldest are dropped",
    )
    parser.add_argument("--model-server", metavar="HOST:PORT", help="use this model server (gRPC) instead of in-process models")
    parser.add_argument("--no-pace", action="store_true", help="a video file: every frame, as fast as they are analysed (benchmarks)")
    parser.add_argument(
        "--retire",
        action="store_true",
        help="instead of running: clear the device's retained status, view and Home Assistant configs (a device gone for good)",
    )


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="emotion-detector edge: %(message)s", stream=sys.stderr)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(args)
    except KeyboardInterrupt:  # before the analysis loop (loading the models): nothing was published yet
        log.info("interrupted")
        return EXIT_INTERRUPTED
    except _Terminated:
        return EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, previous)


def _terminate(_signal: int, _frame: FrameType | None) -> None:
    raise _Terminated


def _run(args: argparse.Namespace) -> int:
    from emotion_detector.analyze_api import Analyzer, nominal_fps
    from emotion_detector.edge.discovery import discovery_messages
    from emotion_detector.edge.events import TrackEvents
    from emotion_detector.edge.mqtt import Broker, BrokerUrlError
    from emotion_detector.edge.outbox import Outbox
    from emotion_detector.edge.publisher import Publisher, package_version
    from emotion_detector.edge.view import ViewSummary
    from emotion_detector.settings import Settings
    from emotion_detector.sources import SourceError, expand
    from emotion_detector.tracking import lost_after_frames

    settings = Settings()
    if not re.fullmatch(DEVICE_ID_PATTERN, args.device_id):
        return _usage(f"--device-id {args.device_id!r}: 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit")
    url = args.mqtt or settings.mqtt_url
    if not url:
        return _usage("no broker: give --mqtt mqtt://host:1883 or set EMOTION_MQTT_URL")
    if not args.retire and args.source is None:
        return _usage("the following arguments are required: --source (or --retire)")
    try:
        broker = Broker.from_url(url, args.username, args.password_file, args.ca_file, args.cert_file, args.key_file)
        if args.retire:
            return _retire(broker, args.device_id, settings.ha_discovery_prefix)
        sources = expand(args.source)
    except (BrokerUrlError, SourceError) as error:
        return _usage(str(error))
    if len(sources) != 1 or not sources[0].kind.tracked:
        return _usage(f"{args.source}: edge mode needs one camera, stream or video file")
    source = sources[0]
    try:
        analyzer = Analyzer(args.model_server, settings)
    except Exception as error:  # models missing or a model server that cannot be reached
        log.error("cannot load the models: %s", error)
        return EXIT_ERROR
    outbox = Outbox(args.queue_path or settings.instance_dir / f"edge-{args.device_id}.sqlite3", args.queue_max_events)
    discovery = discovery_messages(settings.ha_discovery_prefix, args.device_id, package_version()) if settings.ha_discovery else []
    publisher = Publisher(broker, args.device_id, outbox, discovery=discovery)
    fps = nominal_fps(source)
    # One more frame than the tracker keeps a lost face: after that its id never comes back, so it ends once.
    events = TrackEvents(args.device_id, args.interval_s, lost_after_frames(fps, settings.track_lost_after_s) + 1)
    views = ViewSummary(args.device_id, args.interval_s)
    publisher.start()
    log.info("%s → %s as %s (queue: %s)", source.name, broker.describe(), args.device_id, outbox.path)
    try:
        return _publish_events(analyzer, source, fps, not args.no_pace, events, views, publisher)
    finally:
        said_offline = publisher.stop()
        log.info("%d events delivered, %d waiting on disk, %d dropped", publisher.delivered, len(outbox), outbox.dropped)
        if len(outbox):
            log.info("the events waiting on disk go first when %s runs next with %s", args.device_id, outbox.path)
        if not said_offline:
            log.warning("the broker was unreachable at the end: %s could not publish its offline status", args.device_id)
        outbox.close()
        analyzer.close()


def _retire(broker: Broker, device_id: str, discovery_prefix: str) -> int:
    from emotion_detector.edge.publisher import retire

    try:
        # Whatever EMOTION_HA_DISCOVERY says now: the device may have been announced while it was on.
        retire(broker, device_id, discovery_prefix)
    except OSError as error:  # unreachable, refused, or no acknowledgement (TimeoutError)
        log.error("%s", error)
        return EXIT_ERROR
    log.info("retired %s: its retained status, view and Home Assistant configs on %s are cleared", device_id, broker.describe())
    return EXIT_OK


def _publish_events(
    analyzer: Analyzer, source: Source, fps: float, paced: bool, events: TrackEvents, views: ViewSummary, publisher: Publisher
) -> int:
    from emotion_detector.edge.publisher import now_ms
    from emotion_detector.model_client import ModelServerError, ModelUnavailable
    from emotion_detector.sources import SourceError

    code, analysed, played = EXIT_OK, 0, 0
    clock_offset_ms: float | None = None  # source time → wall clock, fixed at the first analysed frame
    started_s = time.perf_counter()
    try:
        for record in analyzer.run_live(source, paced=paced, fps=fps):
            if clock_offset_ms is None:
                clock_offset_ms = now_ms() - record.timestamp_ms
            timestamp_ms = round(clock_offset_ms + record.timestamp_ms)
            for event in events.update(timestamp_ms, record.faces):
                publisher.publish(event)
            if (view := views.update(timestamp_ms, record.faces)) is not None:
                publisher.publish_view(view)
            analysed, played = analysed + 1, record.frame + 1  # frame: the source's, dropped ones counted
    except SourceError as error:  # a stream that broke off: its tracks end like at the end of a file
        log.error("%s", error)
        code = EXIT_BAD_INPUT
    except (ModelUnavailable, ModelServerError) as error:  # the model server is down: the tracks end, said once
        log.error("%s", error)
        code = EXIT_ERROR
    except KeyboardInterrupt:
        log.info("interrupted")
        code = EXIT_INTERRUPTED
    except _Terminated:
        log.info("terminated")
    elapsed_s = time.perf_counter() - started_s
    for event in events.finish():  # the device stops looking: every open track ends
        publisher.publish(event)
    if (view := views.finish(now_ms())) is not None:  # ... and nobody is in view any more
        publisher.publish_view(view)
    log.info("analysed %d of %d frames in %.2f s (%.1f frames/s)", analysed, played, elapsed_s, analysed / max(elapsed_s, 1e-9))
    return code


def _usage(message: str) -> int:
    print(f"emotion-detector edge: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT

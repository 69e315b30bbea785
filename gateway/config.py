"""One typed settings object for the gateway, read from the environment and CLI flags.

Every setting has an environment variable (listed in the README's configuration table); the
``serve`` command's flags override the few that are handy to change per run. Every value is
checked once, at start: a mistake is one ``ConfigError`` sentence that names the variable, the
value and what is allowed, never a traceback later and never silently accepted.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs

from gateway.env import (
    ConfigError,
    env_addresses,
    env_bool,
    env_choice,
    env_float,
    env_ice_servers,
    env_int,
    env_list,
    env_object,
    env_port_range,
    raw,
)
from gateway.event_loop import EVENT_LOOPS, installed
from gateway.recording.storage import APIVIDEO_MIN_CHUNK, ApiVideoSettings, S3Settings
from gateway.upstream.integrity import DEFAULT_CLIENT_EVENTS
from signaling.candidates import DEFAULT_MAX_REMOTE_CANDIDATES, parse_networks

Mode = Literal["auto", "relay", "proxy"]
MODES: tuple[Mode, ...] = ("auto", "relay", "proxy")
Upstream = Literal["openai", "openai-live", "sim", "sim-live"]
#: Where the interviewer is and which contract it speaks: OpenAI (or Azure) over the Realtime
#: calls API or GPT-Live, or the in-process simulator speaking the one or the other.
UPSTREAMS: tuple[Upstream, ...] = ("openai", "openai-live", "sim", "sim-live")
#: What relayed interviews record: nothing, or both voices (each its own Ogg Opus track).
RECORDINGS = ("off", "audio", "requested")
#: ``serve --role``: ``standalone`` serves interviews itself (the default, as before the fleet);
#: a ``front`` hands each interview to a worker of its own; a ``worker`` serves one and exits.
ProcessRole = Literal["standalone", "front", "worker"]
PROCESS_ROLES: tuple[ProcessRole, ...] = ("standalone", "front", "worker")
#: ``serve --backend``: where a front's workers run (``gateway.fleet``).
Backend = Literal["local", "fly"]
BACKENDS: tuple[Backend, ...] = ("local", "fly")


def default_data_dir() -> Path:
    """Where the embedded database, the signing secret and the transcript journal live."""
    return Path(platformdirs.user_data_dir("interview-gateway"))


def _env_networks(env: dict[str, str], name: str) -> tuple[str, ...] | None:
    """Comma-separated CIDRs, checked; None when the variable is not set at all."""
    if name not in env:
        return None
    cidrs = env_list(env, name)
    try:
        parse_networks(cidrs)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    return cidrs


def _is_loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _positive(value: float) -> bool:
    return value > 0


def _not_negative(value: float) -> bool:
    return value >= 0


def _at_least(low: float) -> Callable[[float], bool]:
    return lambda value: value >= low


#: setting -> (its variable, what it may be, the check): every bound written once.
BOUNDS: dict[str, tuple[str, str, Callable[[Any], bool]]] = {
    "port": ("GATEWAY_PORT", "a port from 0 (any free one) to 65535", lambda v: 0 <= v <= 65535),
    "sim_words_per_second": ("GATEWAY_SIM_WORDS_PER_SECOND", "above 0", _positive),
    "max_relay_sessions": ("GATEWAY_MAX_RELAY_SESSIONS", "0 or more", _not_negative),
    "max_relay_per_tenant": ("GATEWAY_MAX_RELAY_PER_TENANT", "0 (no share) or more", _not_negative),
    "upstream_connect_timeout": ("GATEWAY_UPSTREAM_CONNECT_TIMEOUT", "seconds, above 0", _positive),
    "session_time_limit": ("GATEWAY_SESSION_TIME_LIMIT", "seconds, above 0", _positive),
    "hello_timeout": ("GATEWAY_HELLO_TIMEOUT", "seconds, above 0", _positive),
    "peer_timeout": ("GATEWAY_PEER_TIMEOUT", "seconds, above 0", _positive),
    "upstream_timeout": ("GATEWAY_UPSTREAM_TIMEOUT", "seconds, above 0", _positive),
    "reconnect_grace": ("GATEWAY_RECONNECT_GRACE", "seconds, 0 or more", _not_negative),
    "end_linger": ("GATEWAY_END_LINGER", "seconds, 0 or more", _not_negative),
    "jwks_min_refresh": ("GATEWAY_JWKS_MIN_REFRESH", "seconds, 0 or more", _not_negative),
    "rate_api_per_ip": ("GATEWAY_RATE_API_PER_IP", "per minute, 0 (off) or more", _not_negative),
    "rate_api_per_tenant": ("GATEWAY_RATE_API_PER_TENANT", "0 (off) or more", _not_negative),
    "rate_signal_per_ip": ("GATEWAY_RATE_SIGNAL_PER_IP", "0 (off) or more", _not_negative),
    "rate_signal_per_tenant": ("GATEWAY_RATE_SIGNAL_PER_TENANT", "0 (off) or more", _not_negative),
    "max_sessions_per_tenant": ("GATEWAY_MAX_SESSIONS_PER_TENANT", "1 or more", _positive),
    "max_sessions": ("GATEWAY_MAX_SESSIONS", "0 (no limit) or more", _not_negative),
    "max_observers": ("GATEWAY_MAX_OBSERVERS", "0 (none) or more", _not_negative),
    "observer_queue": ("GATEWAY_OBSERVER_QUEUE", "messages, at least 8", _at_least(8)),
    "quality_interval": ("GATEWAY_QUALITY_INTERVAL", "seconds, 0 (off) or more", _not_negative),
    "lost_after": ("GATEWAY_LOST_AFTER", "seconds, at least 1", _at_least(1)),
    "drain_timeout": ("GATEWAY_DRAIN_TIMEOUT", "seconds, 0 (no drain) or more", _not_negative),
    "api_max_body": ("GATEWAY_API_MAX_BODY", "bytes, at least 1024", _at_least(1024)),
    "signal_max_message": (
        "GATEWAY_SIGNAL_MAX_MESSAGE",
        "bytes, at least 4096",
        _at_least(4096),
    ),
    "ping_interval": ("GATEWAY_PING_INTERVAL", "seconds, at least 1", _at_least(1)),
    "turn_ttl": ("GATEWAY_TURN_TTL", "seconds, at least 60", _at_least(60)),
    "recording_segment_seconds": (
        "GATEWAY_RECORDING_SEGMENT_SECONDS",
        "seconds, from 1 to 3600",
        lambda v: 1 <= v <= 3600,
    ),
    "recording_retry_seconds": ("GATEWAY_RECORDING_RETRY_SECONDS", "seconds, above 0", _positive),
    "recording_retention_days": (
        "GATEWAY_RECORDING_RETENTION_DAYS",
        "days, 0 (keep forever) or more",
        _not_negative,
    ),
    "worker_start_timeout": ("GATEWAY_WORKER_START_TIMEOUT", "seconds, above 0", _positive),
    "worker_idle_timeout": ("GATEWAY_WORKER_IDLE_TIMEOUT", "seconds, above 0", _positive),
    "max_workers": ("GATEWAY_MAX_WORKERS", "1 or more", _positive),
    "worker_pool": ("GATEWAY_WORKER_POOL", "0 or more", _not_negative),
    "client_event_limit": ("GATEWAY_CLIENT_EVENT_LIMIT", "0 or more", _not_negative),
    "client_event_bytes": ("GATEWAY_CLIENT_EVENT_BYTES", "bytes, 0 or more", _not_negative),
    "http_header_timeout": ("GATEWAY_HTTP_HEADER_TIMEOUT", "seconds, above 0", _positive),
    "http_body_timeout": ("GATEWAY_HTTP_BODY_TIMEOUT", "seconds, above 0", _positive),
    "http_pending_per_ip": ("GATEWAY_HTTP_PENDING_PER_IP", "0 (no cap) or more", _not_negative),
}


def _recording_storage(env: dict[str, str]) -> dict[str, Any]:
    """``GATEWAY_RECORDING_STORAGE`` and, for ``s3``, the bucket it needs (the rest optional)."""
    kind = env_choice(env, "GATEWAY_RECORDING_STORAGE", "local", ("local", "s3", "apivideo"))
    if kind == "local":
        return {"recording_storage": kind}
    if kind == "apivideo":
        return {"recording_storage": kind, "recording_apivideo": _apivideo(env)}
    bucket = raw(env, "GATEWAY_RECORDING_S3_BUCKET")
    if bucket is None:
        raise ConfigError(
            "GATEWAY_RECORDING_STORAGE is 's3' but GATEWAY_RECORDING_S3_BUCKET is not set."
        )
    s3 = S3Settings(
        bucket=bucket,
        endpoint=raw(env, "GATEWAY_RECORDING_S3_ENDPOINT"),
        region=raw(env, "GATEWAY_RECORDING_S3_REGION") or "us-east-1",
        prefix=raw(env, "GATEWAY_RECORDING_S3_PREFIX") or "",
        access_key_id=raw(env, "GATEWAY_RECORDING_S3_ACCESS_KEY_ID"),
        secret_access_key=raw(env, "GATEWAY_RECORDING_S3_SECRET_ACCESS_KEY"),
    )
    if (s3.access_key_id is None) != (s3.secret_access_key is None):
        raise ConfigError(
            "GATEWAY_RECORDING_S3_ACCESS_KEY_ID and GATEWAY_RECORDING_S3_SECRET_ACCESS_KEY go"
            " together: set both, or neither (obstore's own credential chain)."
        )
    return {"recording_storage": kind, "recording_s3": s3}


def _apivideo(env: dict[str, str]) -> ApiVideoSettings:
    key = raw(env, "GATEWAY_RECORDING_APIVIDEO_KEY")
    if key is None:
        raise ConfigError(
            "GATEWAY_RECORDING_STORAGE is 'apivideo' but GATEWAY_RECORDING_APIVIDEO_KEY is not set."
        )
    chunk = env_float(env, "GATEWAY_RECORDING_APIVIDEO_CHUNK_MIB", 64.0)
    if chunk * 1024 * 1024 < APIVIDEO_MIN_CHUNK or chunk > 4096:
        raise ConfigError(
            "GATEWAY_RECORDING_APIVIDEO_CHUNK_MIB must be from 5 (api.video's smallest chunk)"
            f" to 4096, not {chunk:g}."
        )
    return ApiVideoSettings(
        api_key=key,
        base_url=raw(env, "GATEWAY_RECORDING_APIVIDEO_URL") or ApiVideoSettings.base_url,
        chunk_bytes=round(chunk * 1024 * 1024),
    )


def _turn_settings(env: dict[str, str]) -> dict[str, Any]:
    """``GATEWAY_TURN_URLS``/``_SECRET``/``_TTL``: URLs are no use without the secret that
    mints their credentials, and a credential must live a while."""
    urls = env_list(env, "GATEWAY_TURN_URLS")
    for url in urls:
        if not url.startswith(("turn:", "turns:")):
            raise ConfigError(f"GATEWAY_TURN_URLS names {url!r}; it takes turn: or turns: URLs.")
    secret = raw(env, "GATEWAY_TURN_SECRET")
    if urls and secret is None:
        raise ConfigError("GATEWAY_TURN_URLS is set but GATEWAY_TURN_SECRET is not.")
    ttl = env_int(env, "GATEWAY_TURN_TTL", Settings.turn_ttl)
    return {"turn_urls": urls, "turn_secret": secret, "turn_ttl": ttl}


#: ``GATEWAY_FLY_ROUTING``: how a front on the ``fly`` backend hands a candidate to its worker.
FLY_ROUTINGS = ("replay", "forward")
_FLY_CPU_KINDS = ("shared", "performance")


@dataclass(frozen=True)
class FlySettings:
    """The ``fly`` backend's Machines API client (``gateway.fleet.fly``): which app its worker
    Machines live in, what they run and how big they are, and how long it retries the API."""

    api_url: str = "https://api.machines.dev"
    #: ``FLY_API_TOKEN`` (a deploy token of the workers' app): never logged, never shared
    token: str | None = field(default=None, repr=False)
    app: str = ""
    image: str = ""
    #: regions to create Machines in, in order: one without capacity is skipped for the next
    #: (empty: Fly picks one near the front)
    regions: tuple[str, ...] = ()
    cpu_kind: str = "shared"
    cpus: int = 1
    memory_mb: int = 512
    #: seconds a call may spend retrying 429 and 5xx answers (with backoff) before it fails
    api_deadline: float = 10.0
    #: ``replay``: answer the signaling request with ``fly-replay`` (on Fly); ``forward``: the
    #: front forwards the socket, as on ``local`` (the stand-in, tests and benchmarks)
    routing: str = "replay"
    #: the port a worker Machine's gateway listens on
    worker_port: int = 8080
    #: what the warm pool holds: ``stopped`` Machines (``skip_launch``: a claim boots one, no
    #: CPU billed while it waits) or ``started`` ones (a claim only tags one: fastest, billed)
    pool: str = "stopped"


def _fly_settings(env: dict[str, str]) -> FlySettings:
    """``FLY_API_TOKEN`` and ``GATEWAY_FLY_*``: each value checked here; which ones a front on
    the ``fly`` backend cannot do without is :meth:`Settings.check`'s business."""
    d = FlySettings()
    regions = env_list(env, "GATEWAY_FLY_REGIONS")
    for region in regions:
        if not region.isalnum() or not region.islower():
            raise ConfigError(
                f"GATEWAY_FLY_REGIONS names {region!r}; it takes Fly region codes such as ams."
            )
    fly = FlySettings(
        api_url=(raw(env, "GATEWAY_FLY_API_URL") or d.api_url).rstrip("/"),
        token=raw(env, "FLY_API_TOKEN"),
        app=raw(env, "GATEWAY_FLY_APP") or "",
        image=raw(env, "GATEWAY_FLY_IMAGE") or "",
        regions=regions,
        cpu_kind=env_choice(env, "GATEWAY_FLY_CPU_KIND", d.cpu_kind, _FLY_CPU_KINDS),
        cpus=env_int(env, "GATEWAY_FLY_CPUS", d.cpus),
        memory_mb=env_int(env, "GATEWAY_FLY_MEMORY_MB", d.memory_mb),
        api_deadline=env_float(env, "GATEWAY_FLY_API_DEADLINE", d.api_deadline),
        routing=env_choice(env, "GATEWAY_FLY_ROUTING", d.routing, FLY_ROUTINGS),
        worker_port=env_int(env, "GATEWAY_FLY_WORKER_PORT", d.worker_port),
        pool=env_choice(env, "GATEWAY_FLY_POOL", d.pool, ("stopped", "started")),
    )
    if not fly.api_url.startswith(("http://", "https://")):
        raise ConfigError(f"GATEWAY_FLY_API_URL is {fly.api_url!r}; it must be an http(s) URL.")
    if not 1 <= fly.cpus <= 16:
        raise ConfigError(f"GATEWAY_FLY_CPUS is {fly.cpus}; it must be from 1 to 16.")
    if fly.memory_mb < 256 or fly.memory_mb % 256:
        raise ConfigError(
            f"GATEWAY_FLY_MEMORY_MB is {fly.memory_mb}; it must be a multiple of 256 (256 or more)."
        )
    if fly.api_deadline <= 0:
        raise ConfigError(f"GATEWAY_FLY_API_DEADLINE is {fly.api_deadline:g}; it must be above 0.")
    if not 1 <= fly.worker_port <= 65535:
        raise ConfigError(f"GATEWAY_FLY_WORKER_PORT is {fly.worker_port}; it must be a TCP port.")
    return fly


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    #: The URL that browsers use to reach this gateway (invitation links); derived when empty.
    public_url: str = ""
    #: Proxies (IP addresses, CIDR networks) whose X-Forwarded-*/Forwarded headers count when
    #: ``public_url`` is empty; nobody's by default.
    trusted_proxies: tuple[str, ...] = ()
    mode: Mode = "auto"
    data_dir: Path = field(default_factory=default_data_dir)
    #: None: start the embedded PostgreSQL server in ``data_dir``.
    database_url: str | None = None
    #: The runtime role's password, for servers that ask for one; ``migrate`` sets it.
    db_app_password: str | None = None
    migrate_on_start: bool = True
    jwt_secret: str | None = None
    #: "openai" when OPENAI_API_KEY is set, else "sim" (an in-process simulated upstream);
    #: the ``-live`` kinds speak GPT-Live instead of the Realtime calls API.
    upstream: Upstream = "sim"
    upstream_base_url: str = "https://api.openai.com/v1"
    #: "bearer" (OpenAI) or "api-key" (Azure OpenAI's header).
    upstream_auth: Literal["bearer", "api-key"] = "bearer"
    upstream_session: dict[str, Any] = field(default_factory=dict)
    #: The in-process simulated upstream's interview script (None: the built-in one)...
    sim_script: Path | None = None
    #: ...and how fast its interviewer speaks.
    sim_words_per_second: float = 3.0
    max_relay_sessions: int = 10
    #: Relay slots one tenant may hold at once (0: any of them), so no tenant takes them all.
    max_relay_per_tenant: int = 0
    upstream_connect_timeout: float = 5.0
    session_time_limit: float = 3600.0
    hello_timeout: float = 5.0
    #: A relayed browser whose audio stops for this long is taken for lost.
    peer_timeout: float = 5.0
    #: A relay's upstream that sends nothing (no audio packet, no event) for this long is dead.
    upstream_timeout: float = 5.0
    #: How long a lost candidate may take to reconnect before the session fails.
    reconnect_grace: float = 10.0
    #: The interviewer's words that end the interview (empty: none; the simulated upstream's
    #: default is its script's closing line), and how long its line then plays on.
    end_phrase: str = ""
    end_linger: float = 5.0
    #: The process's event loop (``gateway.event_loop``): ``asyncio`` or ``uvloop``.
    event_loop: str = "asyncio"
    #: Local addresses ICE gathers host candidates on (empty: every interface).
    ice_addresses: tuple[str, ...] = ()
    #: The one UDP port every relay leg's ICE shares (the UDP mux; 0: a random port per leg),
    #: and the addresses its sockets bind (empty: ``ice_addresses``, else 0.0.0.0).
    ice_udp_port: int = 0
    ice_bind_addresses: tuple[str, ...] = ()
    #: 1:1 NAT: ``PUBLIC`` or ``PUBLIC/PRIVATE`` addresses advertised as the host candidates of
    #: relay legs bound to the private ones.
    ice_public_addresses: tuple[str, ...] = ()
    #: Ports (low, high; both included) each relay leg binds inside instead of a random one.
    ice_udp_ports: tuple[int, int] | None = None
    #: RTCConfiguration.iceServers, as W3C dictionaries, for the browser and upstream legs.
    ice_servers: tuple[dict[str, Any], ...] = ()
    upstream_ice_servers: tuple[dict[str, Any], ...] = ()
    #: TURN servers for browsers (``turn:``/``turns:`` URLs) that share ``turn_secret`` with the
    #: gateway (coturn's ``use-auth-secret``), and how long a minted credential lasts (seconds).
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl: int = 3600
    #: Networks (CIDRs) whose remote ICE candidates the gateway checks although their class is
    #: denied (signaling.candidates); None: see ``allowed_remote_candidates``.
    ice_allow_remote: tuple[str, ...] | None = None
    #: How many remote candidates one offer may bring (in its SDP and trickled).
    ice_max_remote_candidates: int = DEFAULT_MAX_REMOTE_CANDIDATES
    #: Tokens: the audience (``aud``) they must name, a JWKS for RS256/ES256 ones, how often at
    #: most an unknown ``kid`` may refetch it, and the roles an admin bearer token may carry.
    jwt_audience: str | None = None
    jwks_url: str | None = None
    jwks_min_refresh: float = 30.0
    admin_roles: tuple[str, ...] = ("admin",)
    #: Browser origins allowed to call the admin API and open signaling sockets cross-origin.
    cors_origins: tuple[str, ...] = ()
    #: Rate limits, per minute (a burst of that many, refilled evenly); 0 switches one off.
    rate_api_per_ip: float = 120.0
    rate_api_per_tenant: float = 600.0
    rate_signal_per_ip: float = 30.0
    rate_signal_per_tenant: float = 300.0
    max_sessions_per_tenant: int = 50
    #: Live interviews this process serves at once, in any mode (0: no limit). One interview
    #: per VM on Fly is 1: /readyz then takes a busy VM out of rotation.
    max_sessions: int = 0
    #: Observers (interviewer or observer tokens) one interview admits at once, and the
    #: messages queued for one of them before it counts as not reading and is dropped.
    max_observers: int = 10
    observer_queue: int = 256
    #: Seconds between two call-quality samples of a relayed interview (0: none).
    quality_interval: float = 5.0
    #: Seconds after which a gateway whose heartbeat stopped counts as dead, and another
    #: finalizes its interviews as ``gateway_lost``.
    lost_after: float = 15.0
    #: Seconds a SIGTERM gives live interviews to finish before they end as ``shutdown``.
    drain_timeout: float = 30.0
    #: Client event types a relayed candidate's client may send upstream (``prefix.*`` for a
    #: family); everything else is dropped and recorded as an integrity event.
    client_events: tuple[str, ...] = DEFAULT_CLIENT_EVENTS
    #: What a session.update the gateway did not make leads to: ``restore`` the gateway's
    #: configuration (and record it), or ``end`` the interview as ``integrity_violation``.
    on_session_tamper: Literal["restore", "end"] = "restore"
    #: What one interview stores of the events its browser forwards (``event`` messages): how
    #: many it takes, and how many bytes of JSON among those stored; beyond, each is refused.
    client_event_limit: int = 2000
    client_event_bytes: int = 1024 * 1024
    api_max_body: int = 64 * 1024
    #: HTTP hardening (``gateway.http.connections``): seconds a connection has to send its
    #: request's headers (and an idle keep-alive connection is kept), seconds a request has to
    #: send its body, and how many connections one address may hold that have not sent their
    #: headers yet (trusted proxies exempt; 0: no cap).
    http_header_timeout: float = 10.0
    http_body_timeout: float = 10.0
    http_pending_per_ip: int = 16
    #: When set, ``/metrics`` answers only ``Authorization: Bearer <this>``.
    metrics_token: str | None = None
    signal_max_message: int = 64 * 1024
    #: Signaling keepalive: a client silent for two intervals is dropped (the idle timeout).
    ping_interval: float = 10.0
    #: What relay mode records (``off``; ``audio``: every interview that does not say
    #: ``off``; ``requested``: those created with ``recording: audio``): see gateway/recording.
    recording: Literal["off", "audio", "requested"] = "off"
    #: Seconds of the interview in one segment file: what a crash can lose, per track.
    recording_segment_seconds: float = 10.0
    #: Where recordings are kept (None: ``recordings`` in ``data_dir``); segments are written
    #: to ``recording-spool`` in ``data_dir`` first.
    recording_dir: Path | None = None
    #: Where finished segments go: ``local`` (``recording_dir``), ``s3`` (``recording_s3``), or
    #: ``apivideo`` (``recording_dir``, and each interview's export to ``recording_apivideo``).
    recording_storage: Literal["local", "s3", "apivideo"] = "local"
    recording_s3: S3Settings | None = None
    recording_apivideo: ApiVideoSettings | None = None
    #: Seconds before a refused upload is retried; doubled after each refusal, up to 60.
    recording_retry_seconds: float = 1.0
    #: Days a recording's segments are kept before they are deleted (0: forever).
    recording_retention_days: float = 0.0
    #: What this process is (``ProcessRole``) and, for a front, where its workers run.
    role: ProcessRole = "standalone"
    backend: Backend = "local"
    #: Seconds a front gives a worker to start (and to find room for it) before the candidate
    #: gets ``worker_unavailable``.
    worker_start_timeout: float = 30.0
    #: Seconds a worker waits for its candidate before it exits unused.
    worker_idle_timeout: float = 60.0
    #: Workers the ``local`` backend runs at once; beyond, a claim waits for room.
    max_workers: int = 20
    #: Started workers a front keeps waiting for interviews, so a claim need not boot one.
    worker_pool: int = 2
    #: The ``fly`` backend's settings (``FLY_API_TOKEN``, ``GATEWAY_FLY_*``).
    fly: FlySettings = field(default_factory=FlySettings)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """The settings from ``env`` (default: the process's), with ``overrides`` (CLI flags)
        on top; every value checked (``ConfigError`` names the first mistake)."""
        e = dict(os.environ if env is None else env)
        upstream = env_choice(
            e, "GATEWAY_UPSTREAM", "openai" if raw(e, "OPENAI_API_KEY") else "sim", UPSTREAMS
        )
        if upstream.startswith("openai") and not raw(e, "OPENAI_API_KEY"):
            raise ConfigError(f"GATEWAY_UPSTREAM is {upstream!r} but OPENAI_API_KEY is not set.")
        sim_script = Path(e["GATEWAY_SIM_SCRIPT"]) if raw(e, "GATEWAY_SIM_SCRIPT") else None
        if sim_script is not None and not sim_script.is_file():
            raise ConfigError(f"GATEWAY_SIM_SCRIPT is {str(sim_script)!r}; no such file.")
        settings = cls(
            host=raw(e, "GATEWAY_HOST") or cls.host,
            port=env_int(e, "GATEWAY_PORT", cls.port),
            public_url=e.get("GATEWAY_PUBLIC_URL", "").strip(),
            trusted_proxies=env_list(e, "GATEWAY_TRUSTED_PROXIES"),
            mode=env_choice(e, "GATEWAY_MODE", "auto", MODES),  # type: ignore[arg-type]
            data_dir=Path(e["GATEWAY_DATA_DIR"])
            if raw(e, "GATEWAY_DATA_DIR")
            else default_data_dir(),
            database_url=raw(e, "DATABASE_URL"),
            db_app_password=raw(e, "GATEWAY_DB_APP_PASSWORD"),
            migrate_on_start=env_bool(e, "GATEWAY_MIGRATE_ON_START", True),
            jwt_secret=raw(e, "GATEWAY_JWT_SECRET"),
            upstream=upstream,  # type: ignore[arg-type]
            upstream_base_url=(raw(e, "OPENAI_BASE_URL") or cls.upstream_base_url).rstrip("/"),
            upstream_auth=env_choice(  # type: ignore[arg-type]
                e, "OPENAI_AUTH_HEADER", "bearer", ("bearer", "api-key")
            ),
            upstream_session=env_object(e, "OPENAI_SESSION"),
            sim_script=sim_script,
            sim_words_per_second=env_float(
                e, "GATEWAY_SIM_WORDS_PER_SECOND", cls.sim_words_per_second
            ),
            max_relay_sessions=env_int(e, "GATEWAY_MAX_RELAY_SESSIONS", cls.max_relay_sessions),
            max_relay_per_tenant=env_int(
                e, "GATEWAY_MAX_RELAY_PER_TENANT", cls.max_relay_per_tenant
            ),
            upstream_connect_timeout=env_float(
                e, "GATEWAY_UPSTREAM_CONNECT_TIMEOUT", cls.upstream_connect_timeout
            ),
            session_time_limit=env_float(e, "GATEWAY_SESSION_TIME_LIMIT", cls.session_time_limit),
            hello_timeout=env_float(e, "GATEWAY_HELLO_TIMEOUT", cls.hello_timeout),
            peer_timeout=env_float(e, "GATEWAY_PEER_TIMEOUT", cls.peer_timeout),
            upstream_timeout=env_float(e, "GATEWAY_UPSTREAM_TIMEOUT", cls.upstream_timeout),
            reconnect_grace=env_float(e, "GATEWAY_RECONNECT_GRACE", cls.reconnect_grace),
            end_phrase=raw(e, "GATEWAY_END_PHRASE") or cls.end_phrase,
            end_linger=env_float(e, "GATEWAY_END_LINGER", cls.end_linger),
            event_loop=env_choice(e, "GATEWAY_EVENT_LOOP", cls.event_loop, EVENT_LOOPS),
            ice_addresses=env_addresses(e, "GATEWAY_ICE_ADDRESSES"),
            ice_udp_port=env_int(e, "GATEWAY_ICE_UDP_PORT", cls.ice_udp_port),
            ice_bind_addresses=env_addresses(e, "GATEWAY_ICE_BIND_ADDRESS"),
            ice_public_addresses=env_list(e, "GATEWAY_ICE_PUBLIC_ADDRESSES"),
            ice_udp_ports=env_port_range(e, "GATEWAY_ICE_UDP_PORTS"),
            ice_servers=env_ice_servers(e, "GATEWAY_ICE_SERVERS"),
            upstream_ice_servers=env_ice_servers(e, "GATEWAY_UPSTREAM_ICE_SERVERS"),
            **_turn_settings(e),
            ice_allow_remote=_env_networks(e, "GATEWAY_ICE_ALLOW_REMOTE"),
            ice_max_remote_candidates=env_int(
                e, "GATEWAY_ICE_MAX_REMOTE_CANDIDATES", cls.ice_max_remote_candidates
            ),
            jwt_audience=raw(e, "GATEWAY_JWT_AUDIENCE"),
            jwks_url=raw(e, "GATEWAY_JWKS_URL"),
            jwks_min_refresh=env_float(e, "GATEWAY_JWKS_MIN_REFRESH", cls.jwks_min_refresh),
            admin_roles=env_list(e, "GATEWAY_ADMIN_ROLES") or cls.admin_roles,
            cors_origins=env_list(e, "GATEWAY_CORS_ORIGINS"),
            rate_api_per_ip=env_float(e, "GATEWAY_RATE_API_PER_IP", cls.rate_api_per_ip),
            rate_api_per_tenant=env_float(
                e, "GATEWAY_RATE_API_PER_TENANT", cls.rate_api_per_tenant
            ),
            rate_signal_per_ip=env_float(e, "GATEWAY_RATE_SIGNAL_PER_IP", cls.rate_signal_per_ip),
            rate_signal_per_tenant=env_float(
                e, "GATEWAY_RATE_SIGNAL_PER_TENANT", cls.rate_signal_per_tenant
            ),
            max_sessions_per_tenant=env_int(
                e, "GATEWAY_MAX_SESSIONS_PER_TENANT", cls.max_sessions_per_tenant
            ),
            max_sessions=env_int(e, "GATEWAY_MAX_SESSIONS", cls.max_sessions),
            max_observers=env_int(e, "GATEWAY_MAX_OBSERVERS", cls.max_observers),
            observer_queue=env_int(e, "GATEWAY_OBSERVER_QUEUE", cls.observer_queue),
            quality_interval=env_float(e, "GATEWAY_QUALITY_INTERVAL", cls.quality_interval),
            lost_after=env_float(e, "GATEWAY_LOST_AFTER", cls.lost_after),
            drain_timeout=env_float(e, "GATEWAY_DRAIN_TIMEOUT", cls.drain_timeout),
            client_events=env_list(e, "GATEWAY_CLIENT_EVENTS") or DEFAULT_CLIENT_EVENTS,
            on_session_tamper=env_choice(  # type: ignore[arg-type]
                e, "GATEWAY_ON_SESSION_TAMPER", "restore", ("restore", "end")
            ),
            client_event_limit=env_int(e, "GATEWAY_CLIENT_EVENT_LIMIT", cls.client_event_limit),
            client_event_bytes=env_int(e, "GATEWAY_CLIENT_EVENT_BYTES", cls.client_event_bytes),
            api_max_body=env_int(e, "GATEWAY_API_MAX_BODY", cls.api_max_body),
            http_header_timeout=env_float(
                e, "GATEWAY_HTTP_HEADER_TIMEOUT", cls.http_header_timeout
            ),
            http_body_timeout=env_float(e, "GATEWAY_HTTP_BODY_TIMEOUT", cls.http_body_timeout),
            http_pending_per_ip=env_int(e, "GATEWAY_HTTP_PENDING_PER_IP", cls.http_pending_per_ip),
            metrics_token=raw(e, "GATEWAY_METRICS_TOKEN"),
            signal_max_message=env_int(e, "GATEWAY_SIGNAL_MAX_MESSAGE", cls.signal_max_message),
            ping_interval=env_float(e, "GATEWAY_PING_INTERVAL", cls.ping_interval),
            recording=env_choice(  # type: ignore[arg-type]
                e, "GATEWAY_RECORDING", "off", RECORDINGS
            ),
            recording_segment_seconds=env_float(
                e, "GATEWAY_RECORDING_SEGMENT_SECONDS", cls.recording_segment_seconds
            ),
            recording_dir=Path(e["GATEWAY_RECORDING_DIR"])
            if raw(e, "GATEWAY_RECORDING_DIR")
            else None,
            **_recording_storage(e),
            recording_retry_seconds=env_float(
                e, "GATEWAY_RECORDING_RETRY_SECONDS", cls.recording_retry_seconds
            ),
            recording_retention_days=env_float(
                e, "GATEWAY_RECORDING_RETENTION_DAYS", cls.recording_retention_days
            ),
            role=env_choice(e, "GATEWAY_ROLE", cls.role, PROCESS_ROLES),  # type: ignore[arg-type]
            backend=env_choice(  # type: ignore[arg-type]
                e, "GATEWAY_BACKEND", cls.backend, BACKENDS
            ),
            worker_start_timeout=env_float(
                e, "GATEWAY_WORKER_START_TIMEOUT", cls.worker_start_timeout
            ),
            worker_idle_timeout=env_float(
                e, "GATEWAY_WORKER_IDLE_TIMEOUT", cls.worker_idle_timeout
            ),
            max_workers=env_int(e, "GATEWAY_MAX_WORKERS", cls.max_workers),
            worker_pool=env_int(e, "GATEWAY_WORKER_POOL", cls.worker_pool),
            fly=_fly_settings(e),
        )
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        settings.check()
        return settings

    def prepare_data_dir(self) -> None:
        """Create the data directory if needed and make sure it can be written (the embedded
        database, the signing secret and the journal live there)."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            probe = self.data_dir / ".writable"
            probe.write_text("")
            probe.unlink()
        except OSError as exc:
            raise ConfigError(
                f"GATEWAY_DATA_DIR is {str(self.data_dir)!r}; it cannot be written"
                f" ({exc.strerror})."
            ) from None

    def check(self) -> None:
        """Every bounded setting within its bounds (``BOUNDS``), or the first that is not."""
        names = {f.name for f in fields(self)}
        for name, (variable, allowed, ok) in BOUNDS.items():
            assert name in names, name
            value = getattr(self, name)
            if not ok(value):
                raise ConfigError(f"{variable} is {value!r}; it must be {allowed}.")
        self._check_ice_sockets()
        if not installed(self.event_loop):
            raise ConfigError(
                f"GATEWAY_EVENT_LOOP is {self.event_loop}, but uvloop is not installed here"
                " (it does not run on Windows); unset it for asyncio's own loop."
            )
        if self.role == "front" and self.backend == "fly":
            missing = [
                name
                for name, value in (
                    ("FLY_API_TOKEN", self.fly.token),
                    ("GATEWAY_FLY_APP", self.fly.app),
                    ("GATEWAY_FLY_IMAGE", self.fly.image),
                )
                if not value
            ]
            if missing:
                verb = "is" if len(missing) == 1 else "are"
                raise ConfigError(
                    f"GATEWAY_BACKEND is 'fly' but {', '.join(missing)} {verb} not set."
                )

    def _check_ice_sockets(self) -> None:
        """The UDP mux, the port range and the public addresses (``gateway.media.
        host_sockets``): each mistake is one sentence."""
        from gateway.media.host_sockets import PublicAddresses

        # not in BOUNDS: a front does not hand its own port to its workers (gateway.fleet)
        if not 0 <= self.ice_udp_port <= 65535:
            raise ConfigError(
                f"GATEWAY_ICE_UDP_PORT is {self.ice_udp_port!r}; it must be 0 (off: a random port"
                " per connection) or a port up to 65535."
            )
        if self.ice_udp_ports is not None:
            low, high = self.ice_udp_ports
            if not (1 <= low <= 65535 and 1 <= high <= 65535):
                raise ConfigError(
                    f"GATEWAY_ICE_UDP_PORTS is {low}-{high}; both ports must be from 1 to 65535."
                )
            if low > high:
                raise ConfigError(
                    f"GATEWAY_ICE_UDP_PORTS is {low}-{high}; the first port must not be above"
                    " the second."
                )
            if self.ice_udp_port:
                raise ConfigError(
                    "GATEWAY_ICE_UDP_PORT and GATEWAY_ICE_UDP_PORTS are both set; choose the one"
                    " shared port or the range."
                )
        if self.ice_bind_addresses and not self.ice_udp_port:
            raise ConfigError(
                "GATEWAY_ICE_BIND_ADDRESS is set but GATEWAY_ICE_UDP_PORT is not; the bind"
                " address is where the shared UDP port listens."
            )
        try:
            PublicAddresses.parse(self.ice_public_addresses)
        except ValueError as exc:
            raise ConfigError(
                f"GATEWAY_ICE_PUBLIC_ADDRESSES is {','.join(self.ice_public_addresses)!r}; {exc}"
                " (entries are PUBLIC or PUBLIC/PRIVATE IP addresses)."
            ) from None

    @property
    def allowed_remote_candidates(self) -> tuple[str, ...]:
        """``ice_allow_remote`` when set; otherwise loopback (``127.0.0.0/8``, ``::1``) for a
        gateway only this machine can reach (it listens on a loopback address and its public
        URL, if any, names a loopback host: the README's first command), and nothing else.
        Either way, the addresses of the gateway's own TURN servers (``turn_urls`` given as IP
        addresses): a browser's relay candidates carry them, on a private network too."""
        turn = tuple(f"{address}/{32 if '.' in address else 128}" for address in self._turn_ips())
        if self.ice_allow_remote is not None:
            return self.ice_allow_remote + turn
        public_host = urlsplit(self.public_url).hostname if self.public_url else self.host
        if _is_loopback(self.host) and _is_loopback(public_host):
            return ("127.0.0.0/8", "::1/128", *turn)
        return turn

    def _turn_ips(self) -> list[str]:
        addresses = []
        for url in self.turn_urls:
            host = url.split(":", 1)[1].split("?", 1)[0]
            host = host.rsplit(":", 1)[0] if host.count(":") == 1 or "]" in host else host
            try:
                addresses.append(str(ipaddress.ip_address(host.strip("[]"))))
            except ValueError:
                continue  # a host name: allow its network with GATEWAY_ICE_ALLOW_REMOTE
        return addresses

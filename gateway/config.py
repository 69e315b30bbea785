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
    raw,
)
from gateway.upstream.integrity import DEFAULT_CLIENT_EVENTS
from signaling.candidates import DEFAULT_MAX_REMOTE_CANDIDATES, parse_networks

Mode = Literal["auto", "relay", "proxy"]
MODES: tuple[Mode, ...] = ("auto", "relay", "proxy")
Upstream = Literal["openai", "openai-live", "sim", "sim-live"]
#: Where the interviewer is and which contract it speaks: OpenAI (or Azure) over the Realtime
#: calls API or GPT-Live, or the in-process simulator speaking the one or the other.
UPSTREAMS: tuple[Upstream, ...] = ("openai", "openai-live", "sim", "sim-live")
#: What relayed interviews record: nothing, or both voices (each its own Ogg Opus track).
RECORDINGS = ("off", "audio")
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
    "upstream_connect_timeout": ("GATEWAY_UPSTREAM_CONNECT_TIMEOUT", "seconds, above 0", _positive),
    "session_time_limit": ("GATEWAY_SESSION_TIME_LIMIT", "seconds, above 0", _positive),
    "hello_timeout": ("GATEWAY_HELLO_TIMEOUT", "seconds, above 0", _positive),
    "peer_timeout": ("GATEWAY_PEER_TIMEOUT", "seconds, above 0", _positive),
    "reconnect_grace": ("GATEWAY_RECONNECT_GRACE", "seconds, 0 or more", _not_negative),
    "end_linger": ("GATEWAY_END_LINGER", "seconds, 0 or more", _not_negative),
    "jwks_min_refresh": ("GATEWAY_JWKS_MIN_REFRESH", "seconds, 0 or more", _not_negative),
    "rate_api_per_ip": ("GATEWAY_RATE_API_PER_IP", "per minute, 0 (off) or more", _not_negative),
    "rate_api_per_tenant": ("GATEWAY_RATE_API_PER_TENANT", "0 (off) or more", _not_negative),
    "rate_signal_per_ip": ("GATEWAY_RATE_SIGNAL_PER_IP", "0 (off) or more", _not_negative),
    "rate_signal_per_tenant": ("GATEWAY_RATE_SIGNAL_PER_TENANT", "0 (off) or more", _not_negative),
    "max_sessions_per_tenant": ("GATEWAY_MAX_SESSIONS_PER_TENANT", "1 or more", _positive),
    "max_sessions": ("GATEWAY_MAX_SESSIONS", "0 (no limit) or more", _not_negative),
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
    "worker_start_timeout": ("GATEWAY_WORKER_START_TIMEOUT", "seconds, above 0", _positive),
    "worker_idle_timeout": ("GATEWAY_WORKER_IDLE_TIMEOUT", "seconds, above 0", _positive),
    "max_workers": ("GATEWAY_MAX_WORKERS", "1 or more", _positive),
    "worker_pool": ("GATEWAY_WORKER_POOL", "0 or more", _not_negative),
}


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
    upstream_connect_timeout: float = 5.0
    session_time_limit: float = 3600.0
    hello_timeout: float = 5.0
    #: A relayed browser whose audio stops for this long is taken for lost.
    peer_timeout: float = 5.0
    #: How long a lost candidate may take to reconnect before the session fails.
    reconnect_grace: float = 10.0
    #: The interviewer's words that end the interview (empty: none; the simulated upstream's
    #: default is its script's closing line), and how long its line then plays on.
    end_phrase: str = ""
    end_linger: float = 5.0
    #: Local addresses ICE gathers host candidates on (empty: every interface).
    ice_addresses: tuple[str, ...] = ()
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
    api_max_body: int = 64 * 1024
    signal_max_message: int = 64 * 1024
    #: Signaling keepalive: a client silent for two intervals is dropped (the idle timeout).
    ping_interval: float = 10.0
    #: What relay mode records (``off``, ``audio``): see ``gateway/recording``.
    recording: Literal["off", "audio"] = "off"
    #: Seconds of the interview in one segment file: what a crash can lose, per track.
    recording_segment_seconds: float = 10.0
    #: Where recordings are kept (None: ``recordings`` in ``data_dir``); segments are written
    #: to ``recording-spool`` in ``data_dir`` first.
    recording_dir: Path | None = None
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
            upstream_connect_timeout=env_float(
                e, "GATEWAY_UPSTREAM_CONNECT_TIMEOUT", cls.upstream_connect_timeout
            ),
            session_time_limit=env_float(e, "GATEWAY_SESSION_TIME_LIMIT", cls.session_time_limit),
            hello_timeout=env_float(e, "GATEWAY_HELLO_TIMEOUT", cls.hello_timeout),
            peer_timeout=env_float(e, "GATEWAY_PEER_TIMEOUT", cls.peer_timeout),
            reconnect_grace=env_float(e, "GATEWAY_RECONNECT_GRACE", cls.reconnect_grace),
            end_phrase=raw(e, "GATEWAY_END_PHRASE") or cls.end_phrase,
            end_linger=env_float(e, "GATEWAY_END_LINGER", cls.end_linger),
            ice_addresses=env_addresses(e, "GATEWAY_ICE_ADDRESSES"),
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
            lost_after=env_float(e, "GATEWAY_LOST_AFTER", cls.lost_after),
            drain_timeout=env_float(e, "GATEWAY_DRAIN_TIMEOUT", cls.drain_timeout),
            client_events=env_list(e, "GATEWAY_CLIENT_EVENTS") or DEFAULT_CLIENT_EVENTS,
            on_session_tamper=env_choice(  # type: ignore[arg-type]
                e, "GATEWAY_ON_SESSION_TAMPER", "restore", ("restore", "end")
            ),
            api_max_body=env_int(e, "GATEWAY_API_MAX_BODY", cls.api_max_body),
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
        if self.role == "front" and self.backend == "fly":
            raise ConfigError(
                "GATEWAY_BACKEND is 'fly', which this version cannot run yet; it must be local."
            )

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

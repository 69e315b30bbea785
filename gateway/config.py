"""One typed settings object for the gateway, read from the environment and CLI flags.

Every setting has an environment variable (listed in the README's configuration table); the
``serve`` command's flags override the few that are handy to change per run.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import platformdirs

from signaling.candidates import DEFAULT_MAX_REMOTE_CANDIDATES, parse_networks

Mode = Literal["auto", "relay", "proxy"]
MODES: tuple[Mode, ...] = ("auto", "relay", "proxy")


class ConfigError(ValueError):
    """A setting has a value the gateway cannot use; the message names the variable."""


def default_data_dir() -> Path:
    """Where the embedded database, the signing secret and the transcript journal live."""
    return Path(platformdirs.user_data_dir("interview-gateway"))


def _env_int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _env_float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def _env_list(env: dict[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _env_json(env: dict[str, str], name: str, default: Any) -> Any:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} must be JSON: {exc.msg} at position {exc.pos}") from None


def _env_networks(env: dict[str, str], name: str) -> tuple[str, ...] | None:
    """Comma-separated CIDRs, checked; None when the variable is not set at all."""
    if name not in env:
        return None
    cidrs = _env_list(env, name)
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


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    #: The URL that browsers use to reach this gateway (invitation links); derived when empty.
    public_url: str = ""
    mode: Mode = "auto"
    data_dir: Path = field(default_factory=default_data_dir)
    #: None: start the embedded PostgreSQL server in ``data_dir``.
    database_url: str | None = None
    migrate_on_start: bool = True
    jwt_secret: str | None = None
    #: "openai" when OPENAI_API_KEY is set, else "sim" (an in-process simulated upstream).
    upstream: Literal["openai", "sim"] = "sim"
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
    #: Local addresses ICE gathers host candidates on (empty: every interface).
    ice_addresses: tuple[str, ...] = ()
    #: RTCConfiguration.iceServers, as W3C dictionaries, for the browser and upstream legs.
    ice_servers: tuple[dict[str, Any], ...] = ()
    upstream_ice_servers: tuple[dict[str, Any], ...] = ()
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
    api_max_body: int = 64 * 1024
    signal_max_message: int = 64 * 1024
    #: Signaling keepalive: a client silent for two intervals is dropped (the idle timeout).
    ping_interval: float = 10.0

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        e = dict(os.environ if env is None else env)
        mode = e.get("GATEWAY_MODE", "auto")
        if mode not in MODES:
            raise ConfigError(f"GATEWAY_MODE must be one of {', '.join(MODES)}, got {mode!r}")
        auth = e.get("OPENAI_AUTH_HEADER", "bearer")
        if auth not in ("bearer", "api-key"):
            raise ConfigError(f"OPENAI_AUTH_HEADER must be 'bearer' or 'api-key', got {auth!r}")
        upstream = e.get("GATEWAY_UPSTREAM") or ("openai" if e.get("OPENAI_API_KEY") else "sim")
        if upstream not in ("openai", "sim"):
            raise ConfigError(f"GATEWAY_UPSTREAM must be 'openai' or 'sim', got {upstream!r}")
        settings = cls(
            host=e.get("GATEWAY_HOST", cls.host),
            port=_env_int(e, "GATEWAY_PORT", cls.port),
            public_url=e.get("GATEWAY_PUBLIC_URL", ""),
            mode=mode,  # type: ignore[arg-type]
            data_dir=Path(e["GATEWAY_DATA_DIR"])
            if e.get("GATEWAY_DATA_DIR")
            else default_data_dir(),
            database_url=e.get("DATABASE_URL") or None,
            migrate_on_start=e.get("GATEWAY_MIGRATE_ON_START", "1") not in ("0", "false", "no"),
            jwt_secret=e.get("GATEWAY_JWT_SECRET") or None,
            upstream=upstream,  # type: ignore[arg-type]
            upstream_base_url=e.get("OPENAI_BASE_URL", cls.upstream_base_url).rstrip("/"),
            upstream_auth=auth,  # type: ignore[arg-type]
            upstream_session=_env_json(e, "OPENAI_SESSION", {}),
            sim_script=Path(e["GATEWAY_SIM_SCRIPT"]) if e.get("GATEWAY_SIM_SCRIPT") else None,
            sim_words_per_second=_env_float(
                e, "GATEWAY_SIM_WORDS_PER_SECOND", cls.sim_words_per_second
            ),
            max_relay_sessions=_env_int(e, "GATEWAY_MAX_RELAY_SESSIONS", cls.max_relay_sessions),
            upstream_connect_timeout=_env_float(
                e, "GATEWAY_UPSTREAM_CONNECT_TIMEOUT", cls.upstream_connect_timeout
            ),
            session_time_limit=_env_float(e, "GATEWAY_SESSION_TIME_LIMIT", cls.session_time_limit),
            hello_timeout=_env_float(e, "GATEWAY_HELLO_TIMEOUT", cls.hello_timeout),
            peer_timeout=_env_float(e, "GATEWAY_PEER_TIMEOUT", cls.peer_timeout),
            reconnect_grace=_env_float(e, "GATEWAY_RECONNECT_GRACE", cls.reconnect_grace),
            ice_addresses=_env_list(e, "GATEWAY_ICE_ADDRESSES"),
            ice_servers=tuple(_env_json(e, "GATEWAY_ICE_SERVERS", [])),
            upstream_ice_servers=tuple(_env_json(e, "GATEWAY_UPSTREAM_ICE_SERVERS", [])),
            ice_allow_remote=_env_networks(e, "GATEWAY_ICE_ALLOW_REMOTE"),
            ice_max_remote_candidates=_env_int(
                e, "GATEWAY_ICE_MAX_REMOTE_CANDIDATES", cls.ice_max_remote_candidates
            ),
            jwt_audience=e.get("GATEWAY_JWT_AUDIENCE") or None,
            jwks_url=e.get("GATEWAY_JWKS_URL") or None,
            jwks_min_refresh=_env_float(e, "GATEWAY_JWKS_MIN_REFRESH", cls.jwks_min_refresh),
            admin_roles=_env_list(e, "GATEWAY_ADMIN_ROLES") or cls.admin_roles,
            cors_origins=_env_list(e, "GATEWAY_CORS_ORIGINS"),
            rate_api_per_ip=_env_float(e, "GATEWAY_RATE_API_PER_IP", cls.rate_api_per_ip),
            rate_api_per_tenant=_env_float(
                e, "GATEWAY_RATE_API_PER_TENANT", cls.rate_api_per_tenant
            ),
            rate_signal_per_ip=_env_float(e, "GATEWAY_RATE_SIGNAL_PER_IP", cls.rate_signal_per_ip),
            rate_signal_per_tenant=_env_float(
                e, "GATEWAY_RATE_SIGNAL_PER_TENANT", cls.rate_signal_per_tenant
            ),
            max_sessions_per_tenant=_env_int(
                e, "GATEWAY_MAX_SESSIONS_PER_TENANT", cls.max_sessions_per_tenant
            ),
            api_max_body=_env_int(e, "GATEWAY_API_MAX_BODY", cls.api_max_body),
            signal_max_message=_env_int(e, "GATEWAY_SIGNAL_MAX_MESSAGE", cls.signal_max_message),
            ping_interval=_env_float(e, "GATEWAY_PING_INTERVAL", cls.ping_interval),
        )
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})

    @property
    def allowed_remote_candidates(self) -> tuple[str, ...]:
        """``ice_allow_remote`` when set; otherwise loopback (``127.0.0.0/8``, ``::1``) for a
        gateway only this machine can reach (it listens on a loopback address and its public
        URL, if any, names a loopback host: the README's first command), and nothing else."""
        if self.ice_allow_remote is not None:
            return self.ice_allow_remote
        public_host = urlsplit(self.public_url).hostname if self.public_url else self.host
        if _is_loopback(self.host) and _is_loopback(public_host):
            return ("127.0.0.0/8", "::1/128")
        return ()

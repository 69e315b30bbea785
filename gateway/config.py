"""One typed settings object for the gateway, read from the environment and CLI flags.

Every setting has an environment variable (listed in the README's configuration table); the
``serve`` command's flags override the few that are handy to change per run.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import platformdirs

from gateway.upstream.integrity import DEFAULT_CLIENT_EVENTS

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


def _turn_settings(env: dict[str, str]) -> dict[str, Any]:
    """``GATEWAY_TURN_URLS``/``_SECRET``/``_TTL``: URLs are no use without the secret that
    mints their credentials, and a credential must live a while."""
    urls = _env_list(env, "GATEWAY_TURN_URLS")
    for url in urls:
        if not url.startswith(("turn:", "turns:")):
            raise ConfigError(f"GATEWAY_TURN_URLS takes turn: or turns: URLs, got {url!r}")
    secret = env.get("GATEWAY_TURN_SECRET") or None
    if urls and secret is None:
        raise ConfigError("GATEWAY_TURN_URLS is set but GATEWAY_TURN_SECRET is not")
    ttl = _env_int(env, "GATEWAY_TURN_TTL", Settings.turn_ttl)
    if ttl <= 0:
        raise ConfigError(f"GATEWAY_TURN_TTL must be a positive number of seconds, got {ttl}")
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
    #: TURN servers for browsers (``turn:``/``turns:`` URLs) that share ``turn_secret`` with the
    #: gateway (coturn's ``use-auth-secret``), and how long a minted credential lasts (seconds).
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl: int = 3600
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

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        e = dict(os.environ if env is None else env)
        mode = e.get("GATEWAY_MODE", "auto")
        if mode not in MODES:
            raise ConfigError(f"GATEWAY_MODE must be one of {', '.join(MODES)}, got {mode!r}")
        auth = e.get("OPENAI_AUTH_HEADER", "bearer")
        if auth not in ("bearer", "api-key"):
            raise ConfigError(f"OPENAI_AUTH_HEADER must be 'bearer' or 'api-key', got {auth!r}")
        tamper = e.get("GATEWAY_ON_SESSION_TAMPER", "restore")
        if tamper not in ("restore", "end"):
            raise ConfigError(
                f"GATEWAY_ON_SESSION_TAMPER must be 'restore' or 'end', got {tamper!r}"
            )
        upstream = e.get("GATEWAY_UPSTREAM") or ("openai" if e.get("OPENAI_API_KEY") else "sim")
        if upstream not in ("openai", "sim"):
            raise ConfigError(f"GATEWAY_UPSTREAM must be 'openai' or 'sim', got {upstream!r}")
        settings = cls(
            host=e.get("GATEWAY_HOST", cls.host),
            port=_env_int(e, "GATEWAY_PORT", cls.port),
            public_url=e.get("GATEWAY_PUBLIC_URL", ""),
            trusted_proxies=_env_list(e, "GATEWAY_TRUSTED_PROXIES"),
            mode=mode,  # type: ignore[arg-type]
            data_dir=Path(e["GATEWAY_DATA_DIR"])
            if e.get("GATEWAY_DATA_DIR")
            else default_data_dir(),
            database_url=e.get("DATABASE_URL") or None,
            db_app_password=e.get("GATEWAY_DB_APP_PASSWORD") or None,
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
            **_turn_settings(e),
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
            max_sessions=_env_int(e, "GATEWAY_MAX_SESSIONS", cls.max_sessions),
            lost_after=_env_float(e, "GATEWAY_LOST_AFTER", cls.lost_after),
            client_events=_env_list(e, "GATEWAY_CLIENT_EVENTS") or DEFAULT_CLIENT_EVENTS,
            on_session_tamper=tamper,  # type: ignore[arg-type]
            api_max_body=_env_int(e, "GATEWAY_API_MAX_BODY", cls.api_max_body),
            signal_max_message=_env_int(e, "GATEWAY_SIGNAL_MAX_MESSAGE", cls.signal_max_message),
            ping_interval=_env_float(e, "GATEWAY_PING_INTERVAL", cls.ping_interval),
        )
        return replace(settings, **{k: v for k, v in overrides.items() if v is not None})

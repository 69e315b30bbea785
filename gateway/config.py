"""One typed settings object for the gateway, read from the environment and CLI flags.

Every setting has an environment variable (listed in the README's configuration table); the
``serve`` command's flags override the few that are handy to change per run. Every value is
checked once, at start: a mistake is one ``ConfigError`` sentence that names the variable, the
value and what is allowed, never a traceback later and never silently accepted.
"""

from __future__ import annotations

import ipaddress
import json
import math
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import platformdirs

from gateway.upstream.integrity import DEFAULT_CLIENT_EVENTS

Mode = Literal["auto", "relay", "proxy"]
MODES: tuple[Mode, ...] = ("auto", "relay", "proxy")
Upstream = Literal["openai", "openai-live", "sim", "sim-live"]
#: Where the interviewer is and which contract it speaks: OpenAI (or Azure) over the Realtime
#: calls API or GPT-Live, or the in-process simulator speaking the one or the other.
UPSTREAMS: tuple[Upstream, ...] = ("openai", "openai-live", "sim", "sim-live")


class ConfigError(ValueError):
    """A setting has a value the gateway cannot use; the message names the variable."""


def default_data_dir() -> Path:
    """Where the embedded database, the signing secret and the transcript journal live."""
    return Path(platformdirs.user_data_dir("interview-gateway"))


def _raw(env: dict[str, str], name: str) -> str | None:
    value = env.get(name)
    return None if value is None or value.strip() == "" else value.strip()


def _env_int(env: dict[str, str], name: str, default: int) -> int:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} is {raw!r}; it must be a whole number.") from None


def _env_float(env: dict[str, str], name: str, default: float) -> float:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} is {raw!r}; it must be a number.") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} is {raw!r}; it must be a finite number.")
    return value


def _env_bool(env: dict[str, str], name: str, default: bool) -> bool:
    raw = _raw(env, name)
    if raw is None:
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} is {raw!r}; it must be 1/true/yes/on or 0/false/no/off.")


def _env_choice(env: dict[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = _raw(env, name) or default
    if raw not in choices:
        raise ConfigError(f"{name} is {raw!r}; it must be one of: {', '.join(choices)}.")
    return raw


def _env_list(env: dict[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def _env_json(env: dict[str, str], name: str, default: Any) -> Any:
    raw = _raw(env, name)
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} is not valid JSON ({exc.msg} at position {exc.pos}).") from None


def _json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return "null" if value is None else kinds.get(type(value), "a number")


def _env_object(env: dict[str, str], name: str) -> dict[str, Any]:
    value = _env_json(env, name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{name} is {_json_kind(value)}; it must be a JSON object.")
    return value


def _env_ice_servers(env: dict[str, str], name: str) -> tuple[dict[str, Any], ...]:
    """W3C ``RTCIceServer`` dictionaries: ``urls`` (a string or strings), and for TURN the
    ``username`` and ``credential`` strings."""
    value = _env_json(env, name, [])
    shape = f"{name} must be a JSON list of objects like" + ' {"urls": "stun:host:3478"}'
    if not isinstance(value, list):
        raise ConfigError(f"{shape}; it is {_json_kind(value)}.")
    for index, server in enumerate(value):
        if not isinstance(server, dict):
            raise ConfigError(f"{shape}; entry {index} is not an object.")
        unknown = set(server) - {"urls", "username", "credential"}
        if unknown:
            raise ConfigError(
                f"{name} entry {index} has unknown keys {sorted(unknown)}; the keys are urls,"
                " username and credential."
            )
        urls = server.get("urls")
        listed = [urls] if isinstance(urls, str) else urls
        if (
            not isinstance(listed, list)
            or not listed
            or not all(
                isinstance(u, str) and u.split(":", 1)[0] in ("stun", "stuns", "turn", "turns")
                for u in listed
            )
        ):
            raise ConfigError(
                f"{name} entry {index} needs urls: a stun:, stuns:, turn: or turns: URL or a"
                " list of them."
            )
        for key in ("username", "credential"):
            if key in server and not isinstance(server[key], str):
                raise ConfigError(f"{name} entry {index}: {key} must be a string.")
    return tuple(value)


def _env_addresses(env: dict[str, str], name: str) -> tuple[str, ...]:
    """IP addresses; a host name (Fly's ``fly-global-services``) is resolved once, here."""
    addresses: list[str] = []
    for entry in _env_list(env, name):
        try:
            addresses.append(str(ipaddress.ip_address(entry)))
            continue
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(entry, None, proto=socket.IPPROTO_UDP)
        except OSError:
            raise ConfigError(
                f"{name} names {entry!r}, which is neither an IP address nor a host name that"
                " resolves here."
            ) from None
        addresses.extend(dict.fromkeys(str(info[4][0]) for info in infos))
    return tuple(dict.fromkeys(addresses))


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
}


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
    #: Local addresses ICE gathers host candidates on (empty: every interface).
    ice_addresses: tuple[str, ...] = ()
    #: RTCConfiguration.iceServers, as W3C dictionaries, for the browser and upstream legs.
    ice_servers: tuple[dict[str, Any], ...] = ()
    upstream_ice_servers: tuple[dict[str, Any], ...] = ()
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

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """The settings from ``env`` (default: the process's), with ``overrides`` (CLI flags)
        on top; every value checked (``ConfigError`` names the first mistake)."""
        e = dict(os.environ if env is None else env)
        upstream = _env_choice(
            e, "GATEWAY_UPSTREAM", "openai" if _raw(e, "OPENAI_API_KEY") else "sim", UPSTREAMS
        )
        if upstream.startswith("openai") and not _raw(e, "OPENAI_API_KEY"):
            raise ConfigError(f"GATEWAY_UPSTREAM is {upstream!r} but OPENAI_API_KEY is not set.")
        sim_script = Path(e["GATEWAY_SIM_SCRIPT"]) if _raw(e, "GATEWAY_SIM_SCRIPT") else None
        if sim_script is not None and not sim_script.is_file():
            raise ConfigError(f"GATEWAY_SIM_SCRIPT is {str(sim_script)!r}; no such file.")
        settings = cls(
            host=_raw(e, "GATEWAY_HOST") or cls.host,
            port=_env_int(e, "GATEWAY_PORT", cls.port),
            public_url=e.get("GATEWAY_PUBLIC_URL", "").strip(),
            trusted_proxies=_env_list(e, "GATEWAY_TRUSTED_PROXIES"),
            mode=_env_choice(e, "GATEWAY_MODE", "auto", MODES),  # type: ignore[arg-type]
            data_dir=Path(e["GATEWAY_DATA_DIR"])
            if _raw(e, "GATEWAY_DATA_DIR")
            else default_data_dir(),
            database_url=_raw(e, "DATABASE_URL"),
            migrate_on_start=_env_bool(e, "GATEWAY_MIGRATE_ON_START", True),
            jwt_secret=_raw(e, "GATEWAY_JWT_SECRET"),
            upstream=upstream,  # type: ignore[arg-type]
            upstream_base_url=(_raw(e, "OPENAI_BASE_URL") or cls.upstream_base_url).rstrip("/"),
            upstream_auth=_env_choice(  # type: ignore[arg-type]
                e, "OPENAI_AUTH_HEADER", "bearer", ("bearer", "api-key")
            ),
            upstream_session=_env_object(e, "OPENAI_SESSION"),
            sim_script=sim_script,
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
            ice_addresses=_env_addresses(e, "GATEWAY_ICE_ADDRESSES"),
            ice_servers=_env_ice_servers(e, "GATEWAY_ICE_SERVERS"),
            upstream_ice_servers=_env_ice_servers(e, "GATEWAY_UPSTREAM_ICE_SERVERS"),
            jwt_audience=_raw(e, "GATEWAY_JWT_AUDIENCE"),
            jwks_url=_raw(e, "GATEWAY_JWKS_URL"),
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
            drain_timeout=_env_float(e, "GATEWAY_DRAIN_TIMEOUT", cls.drain_timeout),
            client_events=_env_list(e, "GATEWAY_CLIENT_EVENTS") or DEFAULT_CLIENT_EVENTS,
            on_session_tamper=_env_choice(  # type: ignore[arg-type]
                e, "GATEWAY_ON_SESSION_TAMPER", "restore", ("restore", "end")
            ),
            api_max_body=_env_int(e, "GATEWAY_API_MAX_BODY", cls.api_max_body),
            signal_max_message=_env_int(e, "GATEWAY_SIGNAL_MAX_MESSAGE", cls.signal_max_message),
            ping_interval=_env_float(e, "GATEWAY_PING_INTERVAL", cls.ping_interval),
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

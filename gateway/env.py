"""Reading one environment variable as a typed value, or a ``ConfigError`` sentence that names
it, the value and what is allowed: the pieces ``gateway.config`` builds its settings from."""

from __future__ import annotations

import ipaddress
import json
import math
import socket
from typing import Any


class ConfigError(ValueError):
    """A setting has a value the gateway cannot use; the message names the variable."""


def raw(env: dict[str, str], name: str) -> str | None:
    value = env.get(name)
    return None if value is None or value.strip() == "" else value.strip()


def env_int(env: dict[str, str], name: str, default: int) -> int:
    text = raw(env, name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name} is {text!r}; it must be a whole number.") from None


def env_float(env: dict[str, str], name: str, default: float) -> float:
    text = raw(env, name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} is {text!r}; it must be a number.") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name} is {text!r}; it must be a finite number.")
    return value


def env_bool(env: dict[str, str], name: str, default: bool) -> bool:
    text = raw(env, name)
    if text is None:
        return default
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} is {text!r}; it must be 1/true/yes/on or 0/false/no/off.")


def env_choice(env: dict[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    text = raw(env, name) or default
    if text not in choices:
        raise ConfigError(f"{name} is {text!r}; it must be one of: {', '.join(choices)}.")
    return text


def env_list(env: dict[str, str], name: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in env.get(name, "").split(",") if part.strip())


def env_json(env: dict[str, str], name: str, default: Any) -> Any:
    text = raw(env, name)
    if text is None:
        return default
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name} is not valid JSON ({exc.msg} at position {exc.pos}).") from None


def json_kind(value: Any) -> str:
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    return "null" if value is None else kinds.get(type(value), "a number")


def env_object(env: dict[str, str], name: str) -> dict[str, Any]:
    value = env_json(env, name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{name} is {json_kind(value)}; it must be a JSON object.")
    return value


def env_ice_servers(env: dict[str, str], name: str) -> tuple[dict[str, Any], ...]:
    """W3C ``RTCIceServer`` dictionaries: ``urls`` (a string or strings), and for TURN the
    ``username`` and ``credential`` strings."""
    value = env_json(env, name, [])
    shape = f"{name} must be a JSON list of objects like" + ' {"urls": "stun:host:3478"}'
    if not isinstance(value, list):
        raise ConfigError(f"{shape}; it is {json_kind(value)}.")
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


def env_addresses(env: dict[str, str], name: str) -> tuple[str, ...]:
    """IP addresses; a host name (Fly's ``fly-global-services``) is resolved once, here."""
    addresses: list[str] = []
    for entry in env_list(env, name):
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


def env_port_range(env: dict[str, str], name: str) -> tuple[int, int] | None:
    """``LOW-HIGH``: a range of UDP ports, both ends included; None when unset."""
    text = raw(env, name)
    if text is None:
        return None
    low, dash, high = text.partition("-")
    try:
        ports = (int(low), int(high))
    except ValueError:
        raise ConfigError(
            f"{name} is {text!r}; it must be two ports joined by a dash, like 40000-40099."
        ) from None
    if not dash:
        raise ConfigError(f"{name} is {text!r}; it must be LOW-HIGH, like 40000-40099.")
    return ports

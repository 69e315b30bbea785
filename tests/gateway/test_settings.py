"""Every setting is checked once, at start: each mistake is one sentence naming the variable,
the value and what is allowed; ``serve`` prints it and exits 1, without a traceback."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

from gateway.config import BOUNDS, ConfigError, Settings

BASE = {"GATEWAY_UPSTREAM": "sim"}


@pytest.mark.parametrize(
    ("env", "named", "says"),
    [
        ({"GATEWAY_PORT": "70000"}, "GATEWAY_PORT", "70000"),
        ({"GATEWAY_PORT": "-1"}, "GATEWAY_PORT", "-1"),
        ({"GATEWAY_PORT": "eighty"}, "GATEWAY_PORT", "whole number"),
        ({"GATEWAY_ICE_ADDRESSES": "no-such-host.invalid"}, "GATEWAY_ICE_ADDRESSES", "resolve"),
        ({"OPENAI_SESSION": "[1,2]"}, "OPENAI_SESSION", "JSON object"),
        ({"OPENAI_SESSION": "{"}, "OPENAI_SESSION", "not valid JSON"),
        ({"GATEWAY_SIM_SCRIPT": "/no/such/script.json"}, "GATEWAY_SIM_SCRIPT", "no such file"),
        ({"GATEWAY_UPSTREAM": "openai"}, "OPENAI_API_KEY", "not set"),
        ({"GATEWAY_UPSTREAM": "openai-live"}, "OPENAI_API_KEY", "not set"),
        ({"GATEWAY_UPSTREAM": "gpt"}, "GATEWAY_UPSTREAM", "openai, openai-live, sim, sim-live"),
        ({"GATEWAY_ICE_SERVERS": '{"urls": "stun:x"}'}, "GATEWAY_ICE_SERVERS", "an object"),
        ({"GATEWAY_ICE_SERVERS": '"stun:x"'}, "GATEWAY_ICE_SERVERS", "a string"),
        ({"GATEWAY_ICE_SERVERS": '[{"url": "stun:x"}]'}, "GATEWAY_ICE_SERVERS", "url"),
        ({"GATEWAY_ICE_SERVERS": '[{"urls": "http://x"}]'}, "GATEWAY_ICE_SERVERS", "turn:"),
        ({"GATEWAY_UPSTREAM_ICE_SERVERS": '[{"urls": ["turn:x"], "credential": 5}]'},
         "GATEWAY_UPSTREAM_ICE_SERVERS", "credential"),
        ({"GATEWAY_MIGRATE_ON_START": "maybe"}, "GATEWAY_MIGRATE_ON_START", "maybe"),
        ({"GATEWAY_HELLO_TIMEOUT": "0"}, "GATEWAY_HELLO_TIMEOUT", "above 0"),
        ({"GATEWAY_PING_INTERVAL": "0"}, "GATEWAY_PING_INTERVAL", "at least 1"),
        ({"GATEWAY_PEER_TIMEOUT": "-3"}, "GATEWAY_PEER_TIMEOUT", "above 0"),
        ({"GATEWAY_MAX_SESSIONS_PER_TENANT": "0"}, "GATEWAY_MAX_SESSIONS_PER_TENANT", "1 or more"),
        ({"GATEWAY_RECONNECT_GRACE": "nan"}, "GATEWAY_RECONNECT_GRACE", "finite"),
        ({"GATEWAY_MODE": "fast"}, "GATEWAY_MODE", "auto, relay, proxy"),
    ],
)  # fmt: skip
def test_each_mistake_is_one_sentence_naming_the_variable(
    env: dict[str, str], named: str, says: str
) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({**BASE, **env})
    message = str(error.value)
    assert named in message and says in message
    assert "\n" not in message and message.endswith(".")


def test_every_bound_is_checked_and_the_defaults_pass_them() -> None:
    settings = Settings.from_env(BASE)  # the defaults are within every bound
    for name, (variable, _, ok) in BOUNDS.items():
        assert ok(getattr(settings, name)), name
        assert variable.startswith("GATEWAY_")


def test_a_host_name_for_the_ice_addresses_is_resolved_once_at_start() -> None:
    settings = Settings.from_env({**BASE, "GATEWAY_ICE_ADDRESSES": "localhost, 127.0.0.1"})
    assert "127.0.0.1" in settings.ice_addresses
    assert len(settings.ice_addresses) == len(set(settings.ice_addresses))


def test_a_well_formed_ice_server_list_is_kept() -> None:
    servers = '[{"urls": ["turn:t.example:3478"], "username": "u", "credential": "p"}]'
    settings = Settings.from_env({**BASE, "GATEWAY_ICE_SERVERS": servers})
    assert settings.ice_servers == (
        {"urls": ["turn:t.example:3478"], "username": "u", "credential": "p"},
    )


async def serve_fails(env: dict[str, str]) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli", "serve", "--no-invite",
        env={**os.environ, **BASE, **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1
    text = stderr.decode()
    assert "Traceback" not in text
    return text.strip().splitlines()[-1]


@pytest.mark.slow
async def test_serve_says_which_port_is_taken(fresh_database_url: str, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = await serve_fails(
            {
                "DATABASE_URL": fresh_database_url,
                "GATEWAY_DATA_DIR": str(tmp_path),
                "GATEWAY_PORT": str(port),
            }
        )
    assert line.startswith(f"interview-gateway: cannot listen on 127.0.0.1:{port}:"), line


@pytest.mark.slow
async def test_serve_says_the_data_dir_cannot_be_written(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    line = await serve_fails({"GATEWAY_DATA_DIR": str(blocked / "data")})
    assert line.startswith("interview-gateway: GATEWAY_DATA_DIR is"), line
    assert "cannot be written" in line


@pytest.mark.slow
async def test_serve_prints_a_bad_setting_as_one_line() -> None:
    line = await serve_fails({"GATEWAY_PORT": "70000"})
    assert line == (
        "interview-gateway: GATEWAY_PORT is 70000; it must be a port from 0 (any free one)"
        " to 65535."
    )


def test_the_gateways_own_turn_servers_are_allowed_as_remote_candidates() -> None:
    """A browser's relay candidates carry the TURN server's address, a private one too."""
    settings = Settings.from_env(
        {
            **BASE,
            "GATEWAY_HOST": "0.0.0.0",
            "GATEWAY_TURN_URLS": "turn:10.99.0.1:3478?transport=udp,turns:turn.example.com:5349",
            "GATEWAY_TURN_SECRET": "s",
        }
    )
    assert settings.allowed_remote_candidates == ("10.99.0.1/32",)
    explicit = Settings.from_env(
        {**BASE, "GATEWAY_ICE_ALLOW_REMOTE": "192.168.7.0/24",
         "GATEWAY_TURN_URLS": "turn:[2001:db8::1]:3478", "GATEWAY_TURN_SECRET": "s"}
    )  # fmt: skip
    assert explicit.allowed_remote_candidates == ("192.168.7.0/24", "2001:db8::1/128")

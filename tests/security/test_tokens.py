"""Tokens: HS256 (a Supabase-style shared secret) and RS256/ES256 from a JWKS served on loopback;
every way a token can be wrong has its own code."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.app import JWT_SECRET
from signaling.client import SignalingClient, SignalingClientError
from signaling.errors import ERRORS
from signaling.tokens import (
    JwksKeySet,
    TokenError,
    TokenVerifier,
    issue_admin_token,
    issue_token,
)

from .conftest import GatewayFactory

SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"  # Supabase's local default
INTERVIEW = "0b9c7d1e-8a52-4c8e-9d3f-1a2b3c4d5e6f"


def refused(call: Any, *args: Any) -> str:
    with pytest.raises(TokenError) as caught:
        call(*args)
    assert caught.value.fatal and caught.value.code in ERRORS
    return caught.value.code


def payload(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "tenant_id": "t1",
        "interview_id": INTERVIEW,
        "role": "candidate",
        "exp": now + 600,
        "iat": now,
        "jti": "j1",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def test_each_kind_of_bad_token_has_its_own_code() -> None:
    verifier = TokenVerifier(SECRET, audience="authenticated")
    now = int(time.time())

    def hs(**claims: Any) -> str:
        return jwt.encode(payload(**{"aud": "authenticated", **claims}), SECRET, algorithm="HS256")

    codes = {
        "expired": refused(verifier.verify, hs(exp=now - 60), INTERVIEW),
        "not_yet_valid": refused(verifier.verify, hs(nbf=now + 600), INTERVIEW),
        "forged": refused(
            verifier.verify,
            jwt.encode(payload(aud="authenticated"), "another-secret" * 4, algorithm="HS256"),
            INTERVIEW,
        ),
        "wrong_audience": refused(verifier.verify, hs(aud="someone-else"), INTERVIEW),
        "wrong_interview": refused(verifier.verify, hs(), "another-interview"),
    }
    assert codes == {
        "expired": "token_expired",
        "not_yet_valid": "token_not_yet_valid",
        "forged": "token_invalid",
        "wrong_audience": "wrong_audience",
        "wrong_interview": "wrong_interview",
    }
    # replayed invitations are refused by the gateway (invitation_used): see test_invitations
    assert len(set(codes.values()) | {"invitation_used"}) == 6


def test_a_supabase_style_token_verifies_with_the_project_secret() -> None:
    token = jwt.encode(
        payload(aud="authenticated", sub="user-1", single_use=False), SECRET, algorithm="HS256"
    )
    claims = TokenVerifier(SECRET, audience="authenticated").verify(token, INTERVIEW)
    assert (claims.tenant_id, claims.role, claims.single_use, claims.verified) == (
        "t1",
        "candidate",
        False,
        True,
    )


def test_candidate_tokens_are_single_use_unless_they_say_otherwise() -> None:
    verifier = TokenVerifier(SECRET)

    def claims(**kwargs: Any) -> Any:
        return verifier.verify(issue_token(SECRET, interview_id=INTERVIEW, **kwargs), INTERVIEW)

    assert claims(tenant_id="t").single_use is True
    assert claims(tenant_id="t", single_use=False).single_use is False
    assert claims(tenant_id="t", role="observer").single_use is False
    bad_role = issue_token(SECRET, tenant_id="t", interview_id=INTERVIEW, role="admin")
    assert refused(verifier.verify, bad_role, INTERVIEW) == "token_invalid"
    no_jti = jwt.encode(payload(jti=None), SECRET, algorithm="HS256")
    assert refused(verifier.verify, no_jti, INTERVIEW) == "token_invalid"


def test_algorithms_outside_the_configuration_are_refused() -> None:
    hs_only = TokenVerifier(SECRET)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs = jwt.encode(payload(), key, algorithm="RS256", headers={"kid": "k"})
    assert refused(hs_only.verify, rs, INTERVIEW) == "token_invalid"
    # with only a JWKS, the HS256 secret is not a way in (no algorithm confusion either)
    jwks_only = TokenVerifier(jwks=JwksKeySet("http://127.0.0.1:9/jwks"))
    hs = jwt.encode(payload(), SECRET, algorithm="HS256")
    assert refused(jwks_only.verify, hs, INTERVIEW) == "token_invalid"


# -- JWKS -----------------------------------------------------------------------------------


@dataclass
class Jwks:
    """A JWKS endpoint on loopback whose keys a test can rotate."""

    url: str = ""
    keys: dict[str, Any] = field(default_factory=dict)  # kid -> private key
    requests: int = 0

    def add(self, kid: str, kind: str) -> Any:
        if kind == "RS256":
            self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        return self.keys[kid]

    def sign(self, kid: str, claims: dict[str, Any]) -> str:
        key = self.keys[kid]
        algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})

    def document(self) -> dict[str, Any]:
        out = []
        for kid, key in self.keys.items():
            if isinstance(key, rsa.RSAPrivateKey):
                jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
                jwk["alg"] = "RS256"
            else:
                jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
                jwk["alg"] = "ES256"
            out.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": out}


@pytest.fixture
async def jwks() -> AsyncIterator[Jwks]:
    state = Jwks()

    async def serve(request: web.Request) -> web.Response:
        state.requests += 1
        return web.json_response(state.document())

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/.well-known/jwks.json"
    yield state
    await runner.cleanup()


@pytest.mark.parametrize("algorithm", ["RS256", "ES256"])
async def test_jwks_tokens_verify_after_one_fetch_then_from_the_cache(
    jwks: Jwks, algorithm: str
) -> None:
    jwks.add("k1", algorithm)
    verifier = TokenVerifier(jwks=JwksKeySet(jwks.url))
    token = jwks.sign("k1", payload())
    pending = verifier.verify(token, INTERVIEW)  # no I/O: the key is not cached yet
    assert not pending.verified and jwks.requests == 0
    confirmed = await verifier.confirm(pending)
    assert confirmed.verified and confirmed.tenant_id == "t1" and jwks.requests == 1
    again = verifier.verify(jwks.sign("k1", payload(jti="j2")), INTERVIEW)
    assert again.verified and again.jti == "j2" and jwks.requests == 1


async def test_an_unknown_kid_refreshes_the_set_once_and_refreshes_are_rate_bounded(
    jwks: Jwks,
) -> None:
    jwks.add("old", "RS256")
    now = [1000.0]
    keys = JwksKeySet(jwks.url, min_refresh_interval=30, clock=lambda: now[0])
    verifier = TokenVerifier(jwks=keys)
    await keys.refresh()
    assert verifier.verify(jwks.sign("old", payload()), INTERVIEW).verified
    # the provider rotates: a token with the new kid makes the gateway look again, once
    jwks.add("new", "ES256")
    now[0] += 31
    claims = await verifier.verify_async(jwks.sign("new", payload()), INTERVIEW)
    assert claims.tenant_id == "t1" and jwks.requests == 2
    # made-up kids cannot hammer the provider: within the interval no further fetch happens
    for n in range(5):
        forged = jwt.encode(
            payload(), jwks.keys["old"], algorithm="RS256", headers={"kid": f"nope{n}"}
        )
        with pytest.raises(TokenError) as caught:
            await verifier.verify_async(forged, INTERVIEW)
        assert caught.value.code == "token_invalid"
    assert jwks.requests == 2 and keys.fetches == 2


async def test_a_token_signed_by_another_key_with_a_known_kid_is_forged(jwks: Jwks) -> None:
    jwks.add("k1", "ES256")
    verifier = TokenVerifier(jwks=JwksKeySet(jwks.url))
    impostor = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(payload(), impostor, algorithm="ES256", headers={"kid": "k1"})
    with pytest.raises(TokenError) as caught:
        await verifier.confirm(verifier.verify(forged, INTERVIEW))
    assert caught.value.code == "token_invalid"
    expired = jwks.sign("k1", payload(exp=int(time.time()) - 100))
    with pytest.raises(TokenError) as caught:
        await verifier.verify_async(expired, INTERVIEW)
    assert caught.value.code == "token_expired"


async def test_an_unreachable_jwks_is_keys_unavailable_not_a_crash() -> None:
    verifier = TokenVerifier(jwks=JwksKeySet("http://127.0.0.1:9/jwks.json", timeout=2))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(payload(), key, algorithm="RS256", headers={"kid": "k"})
    with pytest.raises(TokenError) as caught:
        await verifier.confirm(verifier.verify(token, INTERVIEW))
    assert caught.value.code == "keys_unavailable" and token not in str(caught.value)


# -- admin tokens ---------------------------------------------------------------------------


async def test_admin_tokens_name_a_tenant_and_an_admin_role() -> None:
    verifier = TokenVerifier(SECRET, audience="authenticated")
    good = issue_admin_token(SECRET, tenant_id="t9", subject="ops", audience="authenticated")
    claims = await verifier.verify_admin(good)
    assert (claims.tenant_id, claims.role, claims.subject) == ("t9", "admin", "ops")
    # Supabase custom claims: the tenant in app_metadata
    nested = jwt.encode(
        {
            "role": "admin",
            "exp": int(time.time()) + 60,
            "aud": "authenticated",
            "app_metadata": {"tenant_id": "t8"},
        },
        SECRET,
        algorithm="HS256",
    )
    assert (await verifier.verify_admin(nested)).tenant_id == "t8"
    candidate = issue_admin_token(
        SECRET, tenant_id="t9", role="candidate", audience="authenticated"
    )
    with pytest.raises(TokenError) as caught:
        await verifier.verify_admin(candidate)
    assert caught.value.code == "token_invalid"
    with pytest.raises(TokenError) as caught:
        await verifier.verify_admin(issue_admin_token(SECRET, tenant_id="t9"))  # no aud
    assert caught.value.code == "wrong_audience"


# -- claims of the wrong shape, through the real gateway --------------------------------------


@pytest.mark.parametrize("role", [["admin"], {"admin": True}, 7])
async def test_an_admin_token_whose_role_is_not_a_string_is_token_invalid(role: object) -> None:
    token = jwt.encode(
        {"tenant_id": "t9", "role": role, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"
    )
    with pytest.raises(TokenError) as caught:
        await TokenVerifier(SECRET).verify_admin(token)
    assert caught.value.code == "token_invalid" and "role" in caught.value.message


def test_an_invitation_whose_jti_is_longer_than_200_characters_is_token_invalid() -> None:
    verifier = TokenVerifier(SECRET)
    longest = jwt.encode(payload(jti="j" * 200), SECRET, algorithm="HS256")
    assert verifier.verify(longest, INTERVIEW).jti == "j" * 200
    too_long = jwt.encode(payload(jti="j" * 201), SECRET, algorithm="HS256")
    assert refused(verifier.verify, too_long, INTERVIEW) == "token_invalid"


async def test_the_admin_api_answers_a_list_valued_role_with_401_token_invalid(
    start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = await start_gateway()
    token = jwt.encode(
        {"tenant_id": str(gateway.tenant_id), "role": ["admin"], "exp": int(time.time()) + 60},
        gateway.app[JWT_SECRET],
        algorithm="HS256",
    )
    headers = {"Authorization": f"Bearer {token}"}
    async with http.get(gateway.base_url + "/v1/interviews", headers=headers) as response:
        body = await response.json()
    assert response.status == 401, body
    assert body["error"]["code"] == "token_invalid"


async def test_signaling_refuses_an_invitation_with_a_201_character_jti_as_token_invalid(
    start_gateway: GatewayFactory,
) -> None:
    gateway = await start_gateway(mode="proxy")
    invitation = await gateway.invite("proxy")
    token = issue_token(
        gateway.app[JWT_SECRET],
        tenant_id=str(invitation.tenant_id),
        interview_id=str(invitation.interview_id),
        jti="j" * 201,
    )
    async with SignalingClient(timeout=10) as client:
        with pytest.raises(SignalingClientError) as caught:
            await client.connect(invitation.signal_url(gateway.base_url), token)
        close = await client.wait_closed()
    assert (caught.value.code, close) == ("token_invalid", 4101)
    # the refusal cost the interview nothing: its real invitation still admits
    async with SignalingClient(timeout=10) as client:
        welcome = await client.connect(invitation.signal_url(gateway.base_url), invitation.token)
        assert welcome["type"] == "welcome"

"""Shared fixtures for the signaling tests: a secret, tokens, and offers shaped like a browser's."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from signaling.tokens import TokenVerifier, issue_token
from tests.signaling.signaling_samples import INTERVIEW, SECRET, TENANT


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier(SECRET)


@pytest.fixture
def token() -> Callable[..., str]:
    def make(**overrides: object) -> str:
        fields: dict[str, object] = {"tenant_id": TENANT, "interview_id": INTERVIEW}
        fields.update(overrides)
        secret = str(fields.pop("secret", SECRET))
        return issue_token(secret, **fields)  # type: ignore[arg-type]

    return make

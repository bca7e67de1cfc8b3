"""Standard Webhooks signatures, so receivers can verify with `standardwebhooks` or `svix`.

Pure functions, no I/O: the secret format ("whsec_" + base64) and the signed content
("<msg_id>.<timestamp>.<body>") follow https://www.standardwebhooks.com.
"""

from __future__ import annotations

import base64
import hmac
from datetime import datetime
from functools import lru_cache
from secrets import token_bytes

SECRET_PREFIX = "whsec_"


def generate_secret() -> str:
    """A new signing secret: 24 random bytes (192 bits), in the format every SW library reads."""
    return SECRET_PREFIX + base64.b64encode(token_bytes(24)).decode("ascii")


@lru_cache(maxsize=4096)
def _key(secret: str) -> bytes:
    """Decoded once per secret: every delivery of an integration signs with the same key."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value: one "v1,<sig>" per secret, space-separated.

    Several secrets let a receiver keep verifying while a secret is being rotated.
    """
    content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.digest(_key(s), content, "sha256")).decode("ascii")
        for s in secrets
    )


def active_secrets(
    current: str, previous: str | None, previous_expires_at: datetime | None, now: datetime
) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the previous one during its grace period."""
    if previous and previous_expires_at is not None and previous_expires_at > now:
        return [current, previous]
    return [current]

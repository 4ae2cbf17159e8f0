"""The Migctl-Signature header: Stripe-style HMAC-SHA256 over "<unix seconds>.<raw body>"."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "Migctl-Signature"


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value for one request body, signed at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"

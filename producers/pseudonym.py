"""Pseudonymous subject references, made on the device so raw identities never leave it.

subject_ref = "sub-" + the first 32 hex digits of HMAC-SHA256(operator secret, identifier),
the identifier NFKC-normalised and stripped. The same person gets the same reference from every
device of one operator (so consent can be matched), different operators' references cannot be
linked without their secrets, and nobody can reverse one without the secret. Keep the secret in
the operator's key store, never in events.
"""

import hashlib
import hmac
import unicodedata


def subject_ref(raw_identifier: str, operator_secret: bytes) -> str:
    if len(operator_secret) < 16:
        raise ValueError("the operator secret must be at least 16 bytes")
    normalised = unicodedata.normalize("NFKC", raw_identifier).strip()
    if not normalised:
        raise ValueError("empty identifier")
    digest = hmac.new(operator_secret, normalised.encode(), hashlib.sha256).hexdigest()
    return f"sub-{digest[:32]}"

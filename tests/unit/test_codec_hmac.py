"""The codec's own HMAC-SHA256 (RFC 2104 on hashlib, for speed) against the standard library's."""

import hmac

from hypothesis import given
from hypothesis import strategies as st

from contracts import codec


@given(key=st.binary(max_size=200), message=st.binary(max_size=2000), cut=st.integers(min_value=0))
def test_the_hmac_is_the_standard_librarys_for_any_key_and_message_in_any_parts(
    key: bytes, message: bytes, cut: int
) -> None:
    cut %= len(message) + 1
    expected = hmac.new(key, message, "sha256").hexdigest()
    assert codec._hmac_hex(key, message) == expected
    assert codec._hmac_hex(key, message[:cut], memoryview(message)[cut:]) == expected

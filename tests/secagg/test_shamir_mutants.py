"""secagg.shamir: contracts that mutation testing (make mutate) found unchecked."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg import shamir
from secagg.errors import IntegrityError


@given(length=st.integers(1, 31), excess=st.integers(0, 7), data=st.data())
def test_consistent_shares_of_a_value_too_long_for_their_length_are_integrity_error(
    length: int, excess: int, data: st.DataObject
) -> None:
    """Shares on one polynomial whose secret needs more bytes than they declare are refused as an
    integrity failure (a malicious dealer), never an OverflowError from the byte conversion."""
    secret = (1 << (8 * length + excess)).to_bytes(length + 1, "big")
    t = data.draw(st.integers(1, 4))
    shares = [dataclasses.replace(s, length=length) for s in shamir.split(secret, t + 1, t)]
    with pytest.raises(IntegrityError, match="does not fit the declared length"):
        shamir.combine(shares, t)

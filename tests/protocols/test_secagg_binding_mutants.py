"""protocols.secagg_binding: contracts that mutation testing (make mutate) found unchecked."""

from __future__ import annotations

import struct

import pytest

from protocols.config import SecAggConfig
from protocols.secagg_binding import open_share_pair, share_pair_plaintext, survivors_transcript
from secagg import shamir
from secagg.encoding import FixedPointEncoder
from secagg.errors import IntegrityError


def test_the_survivor_transcript_ends_with_each_id_as_4_little_endian_bytes() -> None:
    """The signed survivor set has one encoding on every platform (numpy's default int does not)."""
    config = SecAggConfig(tuple(range(5)), 3, 4, FixedPointEncoder(1.0, 32, 5))
    survivors = (0, 2, 3, 4)
    empty = survivors_transcript(config, ())
    assert survivors_transcript(config, survivors) == empty + struct.pack("<4I", *survivors)


def test_a_share_pair_naming_other_parties_blames_its_dealer() -> None:
    b, s = shamir.split(b"b" * 32, 3, 2)[1], shamir.split(b"s" * 32, 3, 2)[1]
    sealed_for_another = share_pair_plaintext(dealer=1, holder=4, b_share=b, s_share=s)
    with pytest.raises(IntegrityError, match="names other parties") as info:
        open_share_pair(sealed_for_another, dealer=1, holder=2)
    assert info.value.client_id == 1
    assert open_share_pair(share_pair_plaintext(1, 2, b, s), dealer=1, holder=2) == (b, s)


@pytest.mark.parametrize("body", [b"", b"\x00\x00", b"\x00\x00\x00\x26" + bytes(10), b"\x00\x00\x00\x05" + bytes(76)])
def test_a_truncated_or_malformed_share_pair_blames_its_dealer(body: bytes) -> None:
    header = share_pair_plaintext(1, 2, *shamir.split(b"k" * 32, 3, 2)[:2])[:8]
    with pytest.raises(IntegrityError) as info:
        open_share_pair(header + body, dealer=1, holder=2)
    assert info.value.client_id == 1

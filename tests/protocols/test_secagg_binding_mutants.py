"""protocols.secagg_binding: contracts that mutation testing (make mutate) found unchecked."""

from __future__ import annotations

import struct

from protocols.config import SecAggConfig
from protocols.secagg_binding import survivors_transcript
from secagg.encoding import FixedPointEncoder


def test_the_survivor_transcript_ends_with_each_id_as_4_little_endian_bytes() -> None:
    """The signed survivor set has one encoding on every platform (numpy's default int does not)."""
    config = SecAggConfig(tuple(range(5)), 3, 4, FixedPointEncoder(1.0, 32, 5))
    survivors = (0, 2, 3, 4)
    empty = survivors_transcript(config, ())
    assert survivors_transcript(config, survivors) == empty + struct.pack("<4I", *survivors)

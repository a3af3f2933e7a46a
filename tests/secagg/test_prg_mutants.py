"""secagg.prg: contracts that mutation testing (make mutate) found unchecked."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from secagg import prg
from secagg.testing.strategies import seeds


@given(seeds(), st.integers(0, 100))
def test_expand_defaults_to_32_bit_words_of_the_keystream(seed: bytes, length: int) -> None:
    values = prg.expand(seed, length)
    assert values.dtype == np.uint32
    np.testing.assert_array_equal(values, prg.keystream(prg.derive_key(seed), prg.PRG_NONCE, 0, length))

"""The sign rule, bit packing and Hamming kernels of fgmd.codes against obvious references."""

import numpy as np
import pytest
import torch

from fgmd.codes import as_packed, hamming_distances, pack_codes, sign_codes, unpack_codes


def test_sign_rule_zero_is_one_and_big_endian_bit_order():
    codes = np.array([[0.0, -0.5, 1.0, -1, -2, -3, -4, 0.1] + [-1] * 7 + [0.0]])
    packed = pack_codes(codes)
    assert packed.dtype == np.uint8 and packed.shape == (1, 2)
    # entry 0 is the most significant bit of byte 0; 0 counts as +1 (bit 1)
    assert packed[0, 0] == 0b10100001
    assert packed[0, 1] == 0b00000001


@pytest.mark.parametrize("bits", [8, 16, 24, 32, 48, 64, 128])
def test_pack_unpack_round_trip(bits):
    rng = np.random.default_rng(bits)
    signs = rng.choice(np.array([-1, 1], dtype=np.int8), size=(37, bits))
    packed = pack_codes(signs)
    assert packed.shape == (37, bits // 8)
    unpacked = unpack_codes(packed, bits)
    assert unpacked.dtype == np.int8
    np.testing.assert_array_equal(unpacked, signs)
    real = signs * rng.uniform(0.01, 1.0, size=signs.shape)
    np.testing.assert_array_equal(pack_codes(real), packed)
    np.testing.assert_array_equal(pack_codes(torch.from_numpy(real)), packed)
    np.testing.assert_array_equal(pack_codes(torch.from_numpy(signs).float()), packed)


def test_sign_rule_rejects_ambiguous_or_broken_codes():
    with pytest.raises(TypeError, match="unsigned"):
        sign_codes(np.ones((2, 8), dtype=np.uint8))
    with pytest.raises(TypeError, match="boolean"):
        pack_codes(np.ones((2, 8), dtype=bool))
    with pytest.raises(ValueError, match="NaN"):
        sign_codes(np.full((1, 8), np.nan))
    with pytest.raises(ValueError, match="2-D"):
        pack_codes(np.ones(8))
    with pytest.raises(ValueError, match="multiple of 8"):
        pack_codes(np.ones((2, 12)))


def test_as_packed_accepts_packed_or_real_and_names_bad_width():
    rng = np.random.default_rng(0)
    real = rng.standard_normal((5, 32)).astype(np.float32)
    packed = pack_codes(real)
    np.testing.assert_array_equal(as_packed(real, 32), packed)
    np.testing.assert_array_equal(as_packed(packed, 32), packed)
    with pytest.raises(ValueError, match="query codes have width 48"):
        as_packed(rng.standard_normal((5, 48)), 32, "query codes")


@pytest.mark.parametrize("bits", [16, 24, 48, 64, 128])
def test_hamming_distances_match_unpacked_reference(bits):
    rng = np.random.default_rng(bits)
    queries = rng.standard_normal((9, bits))
    db = rng.standard_normal((41, bits))
    reference = (np.sign(queries + (queries == 0))[:, None, :] != np.sign(db + (db == 0))[None, :, :]).sum(-1)
    distances = hamming_distances(pack_codes(queries), pack_codes(db))
    assert distances.dtype == np.int32
    np.testing.assert_array_equal(distances, reference)

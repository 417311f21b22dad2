"""Binary hash codes: binarisation, bit packing and Hamming distances.

Conventions (shared by every part of ``fgmd.retrieval``):

* A real-valued or ±1 code ``c`` of ``K`` entries is binarised with the sign rule
  ``bit = 1 where c >= 0`` (so 0 counts as +1, as in the evaluation code).
* ``K`` must be a multiple of 8. A packed code is ``K / 8`` bytes (``uint8``). Bit ``i`` of
  the code is stored in byte ``i // 8`` at bit ``7 - i % 8``, i.e. big-endian bit order
  within a byte, exactly what ``np.packbits(..., bitorder="big")`` produces: entry 0 of the
  code is the most significant bit of byte 0.
* The Hamming distance of two codes is the popcount of the XOR of their packed bytes.
  Popcounts do not depend on byte order, so distances are computed on the widest unsigned
  word view of the packed rows (``uint64`` when ``K`` is a multiple of 64).
"""

from __future__ import annotations

import numpy as np
import torch

# Distance rows computed at once by ``hamming_distances`` (bounds its temporary memory).
_DISTANCE_BLOCK_ELEMENTS = 1 << 24


def _to_numpy(codes: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(codes, torch.Tensor):
        return codes.detach().cpu().numpy()
    return np.asarray(codes)


def binarize(codes: np.ndarray | torch.Tensor) -> np.ndarray:
    """Sign-binarise codes: ``[N, K]`` real, ±1 or bool -> ``[N, K]`` bool (True = bit 1).

    Real and signed-integer codes give ``code >= 0``; bool arrays already are bits.
    Unsigned integers are rejected (every value would map to 1: they are almost certainly
    packed bytes or 0/1 bits), and so are NaNs (a broken encoder must not be indexed).
    """
    array = _to_numpy(codes)
    if array.ndim != 2:
        raise ValueError(f"codes must be a 2-D [N, K] array, got shape {array.shape}")
    if array.dtype == np.bool_:
        return array
    if np.issubdtype(array.dtype, np.unsignedinteger):
        raise TypeError(
            f"unsigned integer codes ({array.dtype}) are ambiguous: pass real or ±1 codes, "
            "bool bits, or packed uint8 codes of K/8 bytes"
        )
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.signedinteger)):
        raise TypeError(f"codes must be real, signed integer or bool, got {array.dtype}")
    if np.issubdtype(array.dtype, np.floating) and np.isnan(array).any():
        raise ValueError("codes contain NaN")
    return array >= 0


def _check_bits(bits: int) -> None:
    if bits <= 0 or bits % 8:
        raise ValueError(f"the number of bits must be a positive multiple of 8, got {bits}")


def pack_codes(codes: np.ndarray | torch.Tensor) -> np.ndarray:
    """Binarise and pack codes: ``[N, K]`` real / ±1 / bool -> ``[N, K/8]`` uint8.

    See the module docstring for the sign rule (0 -> bit 1) and the big-endian bit order.
    """
    bits = binarize(codes)
    _check_bits(bits.shape[1])
    return np.packbits(bits, axis=1, bitorder="big")


def unpack_codes(packed: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of ``pack_codes`` up to the sign rule: ``[N, K/8]`` uint8 -> ``[N, K]`` int8 ±1."""
    _check_bits(bits)
    packed = check_packed(packed, bits)
    unpacked = np.unpackbits(packed, axis=1, count=bits, bitorder="big").astype(np.int8)
    return 2 * unpacked - 1


def check_packed(packed: np.ndarray, bits: int, what: str = "packed codes") -> np.ndarray:
    """Validate ``[N, K/8]`` uint8 packed codes; returns them C-contiguous."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] != bits // 8:
        raise ValueError(
            f"{what} must be a uint8 array of shape [N, {bits // 8}] for {bits}-bit codes, "
            f"got {packed.dtype} {packed.shape}"
        )
    return np.ascontiguousarray(packed)


def as_packed(codes: np.ndarray | torch.Tensor, bits: int, what: str = "codes") -> np.ndarray:
    """Accept packed or unpacked codes for ``bits``-bit hashing; return ``[N, K/8]`` uint8.

    A ``uint8`` array of width ``K/8`` is taken as already packed; an array of width ``K``
    is binarised with the sign rule and packed. Anything else is an error naming ``what``.
    """
    _check_bits(bits)
    array = _to_numpy(codes)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array, got shape {array.shape}")
    if array.dtype == np.uint8 and array.shape[1] == bits // 8:
        return np.ascontiguousarray(array)
    if array.shape[1] == bits:
        return pack_codes(array)
    raise ValueError(
        f"{what} have width {array.shape[1]} ({array.dtype}); expected {bits} real/±1 values "
        f"or {bits // 8} packed uint8 bytes per code"
    )


def word_view(packed: np.ndarray) -> np.ndarray:
    """View ``[N, B]`` uint8 packed codes as ``[N, W]`` words of the widest unsigned type
    dividing ``B`` (uint64, uint32, uint16 or uint8). No copy for C-contiguous input."""
    packed = np.ascontiguousarray(packed)
    width = packed.shape[1]
    for dtype in (np.uint64, np.uint32, np.uint16):
        if width % np.dtype(dtype).itemsize == 0:
            return packed.view(dtype)
    return packed


def popcount_rows(words: np.ndarray) -> np.ndarray:
    """Bits set per row: ``[..., W]`` unsigned words -> ``[...]`` uint8 (one word, no
    copy) or uint16 (several words)."""
    counts = np.bitwise_count(words)
    if counts.shape[-1] == 1:
        return counts[..., 0]
    return counts.sum(axis=-1, dtype=np.uint16)


def hamming_distances(query_packed: np.ndarray, db_packed: np.ndarray) -> np.ndarray:
    """All pairwise Hamming distances: ``[Q, B]`` x ``[N, B]`` uint8 -> ``[Q, N]`` int32."""
    query_packed = np.asarray(query_packed)
    db_packed = np.asarray(db_packed)
    if (
        query_packed.dtype != np.uint8
        or db_packed.dtype != np.uint8
        or query_packed.ndim != 2
        or db_packed.ndim != 2
        or query_packed.shape[1] != db_packed.shape[1]
    ):
        raise ValueError(
            "hamming_distances expects uint8 [Q, B] and [N, B] packed codes, got "
            f"{query_packed.dtype} {query_packed.shape} and {db_packed.dtype} {db_packed.shape}"
        )
    query_words = word_view(query_packed)
    db_words = word_view(db_packed)
    n_queries, n_items = len(query_words), len(db_words)
    out = np.empty((n_queries, n_items), dtype=np.int32)
    step = max(1, _DISTANCE_BLOCK_ELEMENTS // max(1, n_items * db_words.shape[1]))
    for start in range(0, n_queries, step):
        block = query_words[start : start + step, None, :] ^ db_words[None, :, :]
        out[start : start + step] = popcount_rows(block)
    return out

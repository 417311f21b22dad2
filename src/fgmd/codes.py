"""Binary hash codes: the sign rule, bit packing and Hamming distances (one owner for all three).

Used by evaluation (metrics, reports), training (hard-triplet mining) and retrieval (index
files, search backends), so every part of fgmd reads a code the same way.

Conventions:

* **Sign rule.** A real-valued or ±1 code ``c`` of ``K`` entries becomes ±1 by
  ``sign_codes``: ``+1 where c >= 0`` (0 counts as +1), ``-1`` elsewhere. Only real or
  signed-integer codes are accepted: boolean {0, 1} bits and unsigned integers are refused
  (they are bits or packed bytes, not codes; reading them with the sign rule would map every
  value to +1), and so are NaNs (a broken encoder must not be scored or indexed).
* **Packing.** ``K`` must be a multiple of 8. A packed code is ``K / 8`` bytes (``uint8``).
  Entry ``i`` of the code is bit ``7 - i % 8`` of byte ``i // 8`` (big-endian within a byte,
  what ``np.packbits(..., bitorder="big")`` produces); the bit is 1 where the sign is +1.
* **Hamming distance** of two codes is the number of entries whose signs differ. Two kernels
  compute it, one per representation: ``hamming_pm1`` on ±1 float tensors (a matrix product,
  on any torch device) and ``hamming_distances`` on packed bytes (XOR + popcount over the
  widest unsigned word view, ``uint64`` when ``K`` is a multiple of 64).
"""

from __future__ import annotations

import numpy as np
import torch

# Distance rows computed at once by ``hamming_distances`` (bounds its temporary memory).
_DISTANCE_BLOCK_ELEMENTS = 1 << 24


def sign_codes(codes: np.ndarray | torch.Tensor, dtype: torch.dtype = torch.int8) -> torch.Tensor:
    """Apply the sign rule: ``[..., K]`` real or ±1 codes -> ``[..., K]`` ±1 of ``dtype``.

    Args:
        codes: real-valued (e.g. tanh outputs) or signed-integer ±1 codes, tensor or array.
        dtype: dtype of the result (``torch.int8`` by default, any float or signed int);
            ``torch.bool`` gives the bits instead (True where the sign is +1).

    Returns:
        A tensor on the device of ``codes`` (CPU for numpy input).
    """
    codes = torch.as_tensor(codes)
    if codes.dtype == torch.bool:
        raise TypeError("boolean codes are ambiguous (bits, not codes): pass real-valued or ±1 codes")
    if not (codes.is_floating_point() or codes.is_signed()):
        raise TypeError(
            f"unsigned integer codes ({codes.dtype}) are ambiguous: pass real or ±1 codes, "
            "or packed uint8 codes of K/8 bytes where packed codes are accepted"
        )
    if codes.is_floating_point() and torch.isnan(codes).any():
        raise ValueError("codes contain NaN")
    if dtype == torch.bool:
        return codes >= 0
    one = torch.ones((), dtype=dtype, device=codes.device)
    return torch.where(codes >= 0, one, -one)


def check_bits(bits: int) -> None:
    """Raise ValueError unless ``bits`` is a positive multiple of 8 (packable)."""
    if bits <= 0 or bits % 8:
        raise ValueError(f"the number of bits must be a positive multiple of 8, got {bits}")


def pack_codes(codes: np.ndarray | torch.Tensor) -> np.ndarray:
    """Sign-binarise and pack codes: ``[N, K]`` real / ±1 -> ``[N, K/8]`` uint8 (module docstring)."""
    if codes.ndim != 2:
        raise ValueError(f"codes must be a 2-D [N, K] array, got shape {tuple(codes.shape)}")
    bits = sign_codes(codes, torch.bool).cpu().numpy()
    check_bits(bits.shape[1])
    return np.packbits(bits, axis=1, bitorder="big")


def unpack_codes(packed: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of ``pack_codes`` up to the sign rule: ``[N, K/8]`` uint8 -> ``[N, K]`` int8 ±1."""
    check_bits(bits)
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
    goes through the sign rule and is packed. Anything else is an error naming ``what``.
    """
    check_bits(bits)
    array = codes.detach().cpu().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes)
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
    """All pairwise Hamming distances of packed codes: ``[Q, B]`` x ``[N, B]`` uint8 -> ``[Q, N]`` int32."""
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


def hamming_pm1(query: torch.Tensor, db: torch.Tensor) -> torch.Tensor:
    """``[Q, K]``, ``[N, K]`` float ±1 codes (same dtype and device) -> ``[Q, N]`` int32 distances.

    The distance is ``(K - q·d) / 2``. Every product, partial sum and the result are integers
    below ``2**24``, so float32 holds them exactly for ``K < 2**24`` (also under TF32/bf16
    matmul modes: their inputs represent ±1 exactly and they accumulate in float32); the
    conversion to int32 is therefore exact.
    """
    return ((query.shape[1] - query @ db.T) * 0.5).to(torch.int32)


def hamming_distance(query_codes: np.ndarray | torch.Tensor, db_codes: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Exact Hamming distances between real-valued or ±1 codes (sign rule applied first).

    Args:
        query_codes: ``[Q, K]`` codes; the result lives on their device.
        db_codes: ``[N, K]`` codes.

    Returns:
        ``[Q, N]`` int32 distances in ``[0, K]``.
    """
    q = sign_codes(query_codes, torch.float32)
    d = sign_codes(db_codes, torch.float32).to(q.device)
    if q.dim() != 2 or d.dim() != 2 or q.shape[1] != d.shape[1]:
        raise ValueError(f"codes must be [Q, K] and [N, K]; got {tuple(q.shape)} and {tuple(d.shape)}")
    return hamming_pm1(q, d)

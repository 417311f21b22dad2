"""Archive-scale retrieval with binary hash codes.

* ``Index`` — packed codes + ids + optional multi-hot labels + encoder identity; atomic,
  checksummed file format; ``search`` (exact top-k) and ``radius_search``.
* ``search_topk`` / ``radius_search`` — the same searches on bare packed arrays.
* ``pack_codes`` / ``unpack_codes`` / ``hamming_distances`` — the bit conventions
  (bit = 1 where code >= 0; big-endian bits within a byte, like ``np.packbits``).

Every backend (``"numpy"``, ``"faiss"``, ``"mih"``, and ``"auto"`` choosing among them) is
exact and ranks by (Hamming distance, database position), so results are identical.
"""

from .ids import IdList
from .index_file import FORMAT_VERSION, Index, IndexFileError
from .packing import as_packed, binarize, hamming_distances, pack_codes, unpack_codes
from .ranking import TopK
from .search import BACKENDS, radius_search, resolve_backend, search_topk

__all__ = [
    "BACKENDS",
    "FORMAT_VERSION",
    "IdList",
    "Index",
    "IndexFileError",
    "TopK",
    "as_packed",
    "binarize",
    "hamming_distances",
    "pack_codes",
    "radius_search",
    "resolve_backend",
    "search_topk",
    "unpack_codes",
]

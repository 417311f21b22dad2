"""Archive-scale retrieval with binary hash codes.

* ``Index`` — packed codes + ids + optional multi-hot labels + encoder identity; atomic,
  checksummed file format; ``search`` (exact top-k) and ``radius_search``.
* ``search_topk`` / ``radius_search`` — the same searches on bare packed arrays.

Codes are packed and compared with ``fgmd.codes`` (bit = 1 where code >= 0; big-endian bits
within a byte, like ``np.packbits``).

Every backend (``"numpy"``, ``"faiss"``, ``"mih"``, and ``"auto"`` choosing among them) is
exact and ranks by (Hamming distance, database position), so results are identical.
"""

from .ids import IdList
from .index_file import FORMAT_VERSION, Index, IndexFileError
from .ranking import Hits, TopK
from .search import BACKENDS, radius_search, resolve_backend, search_topk

__all__ = [
    "BACKENDS",
    "FORMAT_VERSION",
    "Hits",
    "IdList",
    "Index",
    "IndexFileError",
    "TopK",
    "radius_search",
    "resolve_backend",
    "search_topk",
]

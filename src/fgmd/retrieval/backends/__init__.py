"""Search backends. Each one is built once over ``[N, K/8]`` packed database codes
(``N >= 1``) and answers exactly, ties by database position:

* ``numpy_brute.NumpyBruteForce`` — linear scan, numpy only;
* ``faiss_flat.FaissFlat`` — faiss ``IndexBinaryFlat`` plus exact tie re-ranking;
* ``mih.MultiIndexHashing`` — multi-index hashing, sub-linear on large archives.
"""

from .faiss_flat import FaissFlat, faiss_available
from .mih import MultiIndexHashing
from .numpy_brute import NumpyBruteForce

__all__ = ["FaissFlat", "MultiIndexHashing", "NumpyBruteForce", "faiss_available"]

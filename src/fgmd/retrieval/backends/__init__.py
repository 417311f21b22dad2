"""Search backends. Each one is built once over ``[N, K/8]`` packed database codes
(``N >= 1``) and answers exactly, ties by database position:

* ``numpy_brute.NumpyBruteForce`` — linear scan, numpy only;
* ``faiss_flat.FaissFlat`` — faiss ``IndexBinaryFlat`` plus exact tie re-ranking;
* ``mih.MultiIndexHashing`` — multi-index hashing, sub-linear on large archives.

and one approximate backend (same interface, results not guaranteed exact):

* ``faiss_ivf.FaissIVF`` — faiss ``IndexBinaryIVF``, ``nprobe`` calibrated to a recall target.
"""

from .faiss_flat import FaissFlat, faiss_available
from .faiss_ivf import FaissIVF
from .mih import MultiIndexHashing
from .numpy_brute import NumpyBruteForce

__all__ = ["FaissFlat", "FaissIVF", "MultiIndexHashing", "NumpyBruteForce", "faiss_available"]

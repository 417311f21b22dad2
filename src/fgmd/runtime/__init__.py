"""Runtime services shared by training, evaluation, retrieval, export and the API.

Nothing here knows about models, losses or data formats: files written atomically, run-folder
locks, checkpoint I/O, distributed helpers and device choice. Every other package may import
from here; this package imports from no other fgmd package.
"""

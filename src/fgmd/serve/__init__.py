"""``fgmd serve``: a search page and JSON API over indexes made by ``fgmd index``.

``SearchService`` (``service.py``) holds the model, the indexes and the caches and answers
queries; ``create_app`` (``app.py``, needs the ``serve`` extra: FastAPI + uvicorn) puts it
behind HTTP. See docs/SERVE.md.
"""

from .service import QueryError, SearchService

__all__ = ["QueryError", "SearchService"]

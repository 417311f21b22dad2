"""The HTTP face of :class:`fgmd.serve.service.SearchService` (FastAPI; run by uvicorn).

Routes (JSON unless said otherwise; every error is ``{"error": message}`` with a 4xx status):

``GET /``                                   the search page (one self-contained HTML file)
``GET /api/health``                         ``{"status": "ok", "indexes": {modality: count}}``
``GET /api/info``                           model, indexes, class names, preprocessing
``POST /api/search``                        multipart form: ``modality`` (of the query),
                                            ``image`` (a file) or ``query_id`` (an item of
                                            the query split), ``k`` (default 10),
                                            ``offset`` (default 0), ``radius`` (optional)
``GET /api/queries/{modality}``             the query split's items
``GET /api/benchmark/{modality}``           per-query AP of the query split
``GET /api/thumbnail/{modality}/{n}``       PNG of item ``n`` of the ``modality`` index
``GET /api/query-thumbnail/{modality}/{n}`` PNG of item ``n`` of the query split

Uploads are read into memory and never written anywhere (the request body is capped at
``max_upload_bytes`` plus a little form overhead; larger bodies get 413 before they are
read in full).
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

from fgmd.data.io import ImageReadError

from .service import QueryError, SearchService

__all__ = ["create_app", "DEFAULT_MAX_UPLOAD_BYTES"]

DEFAULT_MAX_UPLOAD_BYTES = 32 * 1024 * 1024
_FORM_OVERHEAD = 64 * 1024  # boundaries, part headers and the small fields


def _page() -> str:
    return (resources.files("fgmd.serve") / "page.html").read_text(encoding="utf-8")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _read_form(request: Request, limit: int):
    """The form (multipart or urlencoded) of ``request``, parsed in memory; ``QueryError``
    (413) when the body is over ``limit`` plus the form overhead."""
    content_type = request.headers.get("content-type", "")
    multipart = content_type.startswith("multipart/form-data")
    if not multipart and not content_type.startswith("application/x-www-form-urlencoded"):
        raise QueryError("send the query as multipart/form-data (fields image or query_id, modality, k)", 415)
    cap = limit + _FORM_OVERHEAD
    too_large = QueryError(f"upload too large: the limit is {limit // (1024 * 1024)} MiB", 413)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise too_large

    async def replay():
        yield bytes(body)

    if not multipart:
        return await FormParser(request.headers, replay()).parse()
    parser = MultiPartParser(request.headers, replay(), max_files=1, max_fields=16)
    parser.spool_max_size = cap  # the file part stays in memory (never spooled to a temp file)
    try:
        return await parser.parse()
    except MultiPartException as error:
        raise QueryError(f"malformed form: {error.message}") from None


def _int_field(form, name: str, default: int | None) -> int | None:
    value = form.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise QueryError(f"field {name!r} must be an integer, got {value!r}") from None


def create_app(service: SearchService, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> FastAPI:
    """The application serving ``service``; uploads larger than ``max_upload_bytes`` are refused."""
    app = FastAPI(title="fgmd search", docs_url=None, redoc_url=None, openapi_url="/api/openapi.json")
    page = _page()

    @app.exception_handler(QueryError)
    async def query_error(request: Request, error: QueryError) -> JSONResponse:
        return _error(error.status, str(error))

    @app.exception_handler(ImageReadError)
    async def image_error(request: Request, error: ImageReadError) -> JSONResponse:
        return _error(422, str(error))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return _error(422, problems)

    @app.get("/", response_class=HTMLResponse)
    async def index_page() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/api/health")
    async def health() -> dict:
        return {"status": "ok", "indexes": {m: len(index) for m, index in service.indexes.items()}}

    @app.get("/api/info")
    async def info() -> dict:
        return service.info()

    @app.post("/api/search")
    async def search(request: Request) -> dict:
        form = await _read_form(request, max_upload_bytes)
        try:
            modality = form.get("modality")
            if not isinstance(modality, str) or not modality:
                raise QueryError("field 'modality' (the query's modality) is required")
            if modality not in service.query_modalities:
                raise QueryError(
                    f"no index to search with {modality!r} queries; query modalities: {service.query_modalities}"
                )
            page_args = {
                "k": _int_field(form, "k", 10),
                "offset": _int_field(form, "offset", 0),
                "radius": _int_field(form, "radius", None),
            }
            image, query_id = form.get("image"), form.get("query_id")
            if isinstance(image, UploadFile) and query_id:
                raise QueryError("give an image or a query_id, not both")
            if isinstance(image, UploadFile):
                data = await image.read()
                if len(data) > max_upload_bytes:
                    raise QueryError(f"upload too large: the limit is {max_upload_bytes // (1024 * 1024)} MiB", 413)
                name = image.filename or "upload"
                return await run_in_threadpool(service.search_upload, data, name, modality, **page_args)
            if isinstance(query_id, str) and query_id:
                return await run_in_threadpool(service.search_split_item, query_id, modality, **page_args)
            raise QueryError("field 'image' (a file) or 'query_id' is required")
        finally:
            await form.close()

    @app.get("/api/queries/{modality}")
    def queries(modality: str) -> dict:
        return {"modality": modality, "split": service.config.data.query_split, "items": service.query_items(modality)}

    @app.get("/api/benchmark/{modality}")
    def benchmark(modality: str) -> dict:
        return service.benchmark(modality)

    @app.get("/api/thumbnail/{modality}/{position}")
    def thumbnail(modality: str, position: int) -> Response:
        return Response(
            service.thumbnail(modality, position), media_type="image/png", headers={"Cache-Control": "max-age=3600"}
        )

    @app.get("/api/query-thumbnail/{modality}/{position}")
    def query_thumbnail(modality: str, position: int) -> Response:
        return Response(
            service.query_thumbnail(modality, position),
            media_type="image/png",
            headers={"Cache-Control": "max-age=3600"},
        )

    return app

"""The FastAPI app: the page, the job API and the live stream.

Routes (see docs/serve.md for the contract):

- ``GET /``: the page; ``/static/...``: its script.
- ``POST /api/jobs``: multipart ``image`` + ``audio`` -> 202 ``{"id"}``.
- ``GET /api/jobs/{id}``: status; ``GET /api/jobs/{id}/video``: the mp4 once done.
- ``WS /api/jobs/{id}/stream``: the fragmented mp4 as it is written, from its first byte.

Every error answer is ``{"error": "<one line>"}``; tracebacks go to the server log only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cospeech.errors import CospeechError, InputError
from cospeech.serve.jobs import DONE, FAILED, Job, JobPool, QueueFull
from cospeech.serve.settings import ServeSettings
from cospeech.serve.uploads import (
    UploadTooLarge,
    check_audio,
    check_image,
    remove_folder,
    store_upload,
)

log = logging.getLogger("cospeech.serve")

STATIC = Path(__file__).resolve().parent / "static"
STREAM_CHUNK = 256 * 1024  # largest WebSocket message of video bytes
BODY_IDLE_TIMEOUT_S = 30.0  # an upload that sends nothing for this long is dropped (408)
CLOSE_FAILED = 4000  # WebSocket close code: the job failed (reason: its error)
CLOSE_UNKNOWN = 4404  # WebSocket close code: no such job
RETRY_AFTER_S = 10
CHECKS_AT_ONCE = 4  # uploads decoded at once (a 25-megapixel photo decodes to 75 MB)


class UploadTimeout(InputError):
    """The client stopped sending its upload (HTTP 408)."""


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status, headers=headers)


class BodyLimit:
    """ASGI middleware: refuses a request body over ``max_bytes`` (413, before reading it
    when ``Content-Length`` tells, else as soon as it passes the cap) and drops an upload
    that stalls for ``idle_s`` seconds (408)."""

    def __init__(self, app: ASGIApp, max_bytes: int, idle_s: float = BODY_IDLE_TIMEOUT_S):
        self.app, self.max_bytes, self.idle_s = app, max_bytes, idle_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            reason = "request too large" if declared.isdigit() else "bad Content-Length"
            status = 413 if declared.isdigit() else 400
            await error_response(status, f"{reason} (limit {self.max_bytes} bytes)")(
                scope, receive, send
            )
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), self.idle_s)
            except asyncio.TimeoutError:
                raise UploadTimeout(
                    f"the upload stalled (nothing received for {self.idle_s:g} s)"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise UploadTooLarge(f"request too large (limit {self.max_bytes} bytes)")
            return message

        await self.app(scope, limited, send)


def create_app(pool: JobPool, settings: ServeSettings) -> FastAPI:
    """The web app over ``pool`` (which the caller starts and shuts down)."""
    app = FastAPI(title="cospeech", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, idle_s=BODY_IDLE_TIMEOUT_S)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_error_handlers(app)
    checking = asyncio.Semaphore(CHECKS_AT_ONCE)

    def find(job_id: str) -> Job:
        job = pool.get(job_id)
        if job is None:
            raise HTTPException(404, "no such job (unknown id, or it expired)")
        return job

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.post("/api/jobs", status_code=202)
    async def create_job(request: Request) -> JSONResponse:
        pool.check_room()  # a full queue refuses before the upload is read
        form = await request.form(max_files=2, max_fields=2)
        job = pool.new_job()
        try:
            image, audio = _file(form, "image"), _file(form, "audio")
            async with checking:
                await run_in_threadpool(
                    store_upload, image.file, job.image, "image", settings.max_image_bytes
                )
                await run_in_threadpool(
                    store_upload, audio.file, job.audio, "audio", settings.max_audio_bytes
                )
                await run_in_threadpool(check_image, job.image, settings.max_image_pixels)
                await run_in_threadpool(check_audio, job.audio, settings.max_audio_seconds)
            pool.submit(job)
        except BaseException:
            remove_folder(job.folder)
            raise
        finally:
            await form.close()
        return JSONResponse({"id": job.id}, 202)

    @app.get("/api/jobs/{job_id}")
    async def job_status(job_id: str) -> JSONResponse:
        return JSONResponse(pool.status(find(job_id)))

    @app.get("/api/jobs/{job_id}/video")
    async def job_video(job_id: str) -> FileResponse:
        job = find(job_id)
        if job.status != DONE:
            detail = f"the job failed: {job.error}" if job.status == FAILED else "not done yet"
            raise HTTPException(409, f"{detail} (status {job.status})")
        return FileResponse(job.video, media_type="video/mp4", filename="cospeech.mp4")

    @app.websocket("/api/jobs/{job_id}/stream")
    async def job_stream(websocket: WebSocket, job_id: str) -> None:
        job = pool.get(job_id)
        await websocket.accept()  # then close with a code the client can read
        if job is None:
            await websocket.close(CLOSE_UNKNOWN, "no such job (unknown id, or it expired)")
            return
        await _watch(websocket, job, pool)

    return app


def _file(form, name: str) -> UploadFile:
    value = form.get(name)
    if not isinstance(value, UploadFile):
        raise InputError(f"{name}: missing (send a multipart form with files image and audio)")
    return value


async def _watch(websocket: WebSocket, job: Job, pool: JobPool) -> None:
    """Send ``job``'s video bytes from the start as they arrive, then close; the last
    watcher to leave a job that has not finished cancels it."""
    changed = job.subscribe()
    with job.lock:
        job.watchers += 1
    client_gone = asyncio.ensure_future(_until_disconnect(websocket))
    try:
        if await _send_video(websocket, job, changed, client_gone):
            with job.lock:
                failed, error = job.status == FAILED, job.error or ""
            if failed:
                await websocket.close(CLOSE_FAILED, _close_reason(error))
            else:
                await websocket.close()
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client left while we were sending
    finally:
        client_gone.cancel()
        job.unsubscribe(changed)
        with job.lock:
            job.watchers -= 1
            abandoned = job.watchers == 0 and not job.finished
        if abandoned:
            pool.cancel(job)


async def _send_video(
    websocket: WebSocket, job: Job, changed: asyncio.Event, client_gone: asyncio.Future
) -> bool:
    """Stream until the job has finished and every byte went out (True) or the client
    left (False)."""
    sent = 0
    async with _open_output(job) as read:
        while True:
            changed.clear()
            with job.lock:
                available, finished = job.bytes_written, job.finished
            if available > sent:
                data = read(sent, min(available - sent, STREAM_CHUNK))
                if not data:  # the folder was removed under us (failed or expired)
                    return True
                await websocket.send_bytes(data)
                sent += len(data)
                continue
            if finished:
                return True
            waiter = asyncio.ensure_future(changed.wait())
            await asyncio.wait({waiter, client_gone}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if client_gone.done():
                return False


@contextlib.asynccontextmanager
async def _open_output(job: Job) -> AsyncIterator[Callable[[int, int], bytes]]:
    """``read(offset, size)`` over the job's video, opened on first use (b"" when gone)."""
    handle = None

    def read(offset: int, size: int) -> bytes:
        nonlocal handle
        if handle is None:
            try:
                handle = open(job.video, "rb")  # noqa: SIM115 - closed below
            except OSError:
                return b""
        handle.seek(offset)
        return handle.read(size)

    try:
        yield read
    finally:
        if handle is not None:
            handle.close()


async def _until_disconnect(websocket: WebSocket) -> None:
    """Read (and ignore) what the client sends until it disconnects."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return


def _close_reason(error: str) -> str:
    """A WebSocket close reason fits in 123 bytes of UTF-8."""
    return error.encode()[:120].decode(errors="ignore")


def _add_error_handlers(app: FastAPI) -> None:
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return error_response(422, f"invalid request: {where} {first.get('msg', '')}".strip())

    async def input_error(_request: Request, exc: CospeechError) -> JSONResponse:
        if isinstance(exc, QueueFull):
            return error_response(429, str(exc), {"Retry-After": str(RETRY_AFTER_S)})
        if isinstance(exc, UploadTooLarge):
            return error_response(413, str(exc))
        if isinstance(exc, UploadTimeout):
            return error_response(408, str(exc))
        return error_response(400, str(exc))

    async def disconnected(_request: Request, _exc: ClientDisconnect) -> JSONResponse:
        return error_response(400, "the client disconnected before the upload was complete")

    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("error answering %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal server error (details are in the server log)")

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(CospeechError, input_error)
    app.add_exception_handler(ClientDisconnect, disconnected)
    app.add_exception_handler(Exception, internal_error)

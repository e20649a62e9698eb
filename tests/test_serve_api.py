"""``cospeech serve``: the job API, its limits and its behaviour under load and attack.

Generation is real (the tiny random models of ``pipeline_fixture``, 64x64, 2 steps) on
1.5 s of real speech and the example photo. Tests that need a job to stay queued or
running hold it at a gate before the real render starts. Servers listen on 127.0.0.1 only;
every loop and wait is bounded.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from cospeech.errors import InputError
from cospeech.pipeline.generator import Generator
from cospeech.serve.app import CLOSE_FAILED, CLOSE_UNKNOWN, create_app
from cospeech.serve.jobs import CANCELLED_MESSAGE, INTERNAL_MESSAGE, JobPool
from cospeech.serve.render import render
from cospeech.serve.server import generate_options, running_pool
from cospeech.serve.settings import ServeSettings, workers_for_speed
from cospeech.serve.uploads import UploadTooLarge, check_audio
from pipeline_fixture import COSPEECH, ENV, tiny_models
from serve_fixture import real_server

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SPEECH_SECONDS = 1.5
WAIT_S = 120.0  # the longest any test waits for a job on a shared 2-core CPU


# ---------------------------------------------------------------- inputs


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    return tiny_models(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def generator(model_folder) -> Generator:
    return Generator.from_pretrained(model_folder)


@pytest.fixture(scope="module")
def photo() -> bytes:
    return (EXAMPLES / "reference.png").read_bytes()


@pytest.fixture(scope="module")
def speech() -> bytes:
    """The first 1.5 s of the example speech as 16-bit wav."""
    samples, rate = soundfile.read(EXAMPLES / "speech.wav", dtype="float32")
    out = io.BytesIO()
    soundfile.write(out, samples[: int(SPEECH_SECONDS * rate)], rate, format="WAV")
    return out.getvalue()


def encode_audio(seconds: float, container: str, codec: str) -> bytes:
    """A tone in ``container`` / ``codec`` (what a browser's MediaRecorder sends: webm or
    ogg with opus), encoded with PyAV at 48 kHz."""
    rate = 48000
    t = np.arange(int(seconds * rate)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    out = io.BytesIO()
    with av.open(out, "w", format=container) as box:
        stream = box.add_stream(codec, rate=rate, layout="mono")
        for start in range(0, tone.size, 960):
            frame = av.AudioFrame.from_ndarray(tone[None, start : start + 960], "flt", "mono")
            frame.sample_rate, frame.pts = rate, start
            for packet in stream.encode(frame):
                box.mux(packet)
        for packet in stream.encode(None):
            box.mux(packet)
    return out.getvalue()


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height)).save(out, format="PNG")
    return out.getvalue()


def files(image: bytes, audio: bytes) -> dict:
    # the names a client gives are never used: a path-like one must do no harm
    return {"image": ("../../etc/passwd", image, "audio/wav"), "audio": ("/tmp/x", audio, "")}


# ---------------------------------------------------------------- servers


class Gate:
    """Holds every job before its real render until :meth:`open`."""

    def __init__(self, generator: Generator, settings: ServeSettings) -> None:
        self.event = threading.Event()
        self.real = lambda job: render(generator, generate_options(settings), job)

    def __call__(self, job) -> None:
        while not self.event.wait(0.05):
            job.check_cancel()
        self.real(job)

    def open(self) -> None:
        self.event.set()


@contextlib.contextmanager
def served(
    generator: Generator, gate: bool = False, workers: int = 1, **limits
) -> Iterator[tuple[TestClient, JobPool, Gate | None]]:
    """A TestClient on the app over a fresh pool (gated when ``gate``)."""
    settings = ServeSettings(workers=workers, **limits)
    if gate:
        held = Gate(generator, settings)
        pool = JobPool(held, workers, settings.max_queue, settings.job_ttl_s)
        try:
            with TestClient(create_app(pool, settings), raise_server_exceptions=False) as c:
                yield c, pool, held
        finally:
            held.open()
            pool.shutdown()
        return
    with (
        running_pool(generator, settings, workers) as pool,
        TestClient(create_app(pool, settings), raise_server_exceptions=False) as client,
    ):
        yield client, pool, None


def wait_status(client: TestClient, job_id: str, wanted: set[str], timeout: float = WAIT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").json()
        if status["status"] in wanted:
            return status
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} never reached {wanted}: {status}")


def read_stream(client: TestClient, job_id: str) -> tuple[bytes, int]:
    """All bytes of the job's stream and the close code."""
    data = b""
    with client.websocket_connect(f"/api/jobs/{job_id}/stream") as ws:
        while True:
            message = ws.receive()
            if message["type"] == "websocket.close":
                return data, message.get("code", 1000)
            data += message["bytes"]


def assert_one_line_error(response, status: int, pattern: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert "\n" not in body["error"] and "Traceback" not in body["error"]
    assert "cospeech-serve-" not in body["error"]  # no server path leaks
    assert re.search(pattern, body["error"]), body["error"]


def mp4_contents(data: bytes) -> tuple[int, float, str, str]:
    """(video frames, audio seconds, video codec, audio codec) decoded with PyAV."""
    with av.open(io.BytesIO(data)) as box:
        video, audio = box.streams.video[0], box.streams.audio[0]
        codecs = video.codec_context.name, audio.codec_context.name
        frames = sum(1 for _ in box.decode(video))
    with av.open(io.BytesIO(data)) as box:
        samples = sum(f.samples for f in box.decode(box.streams.audio[0]))
        rate = box.streams.audio[0].rate
    return frames, samples / rate, *codecs


def top_level_boxes(data: bytes) -> list[str]:
    """The ISO-BMFF box types at the top level of ``data``, in order."""
    boxes, offset = [], 0
    while offset + 8 <= len(data):
        size = int.from_bytes(data[offset : offset + 4], "big")
        boxes.append(data[offset + 4 : offset + 8].decode("latin-1"))
        if size < 8:
            break
        offset += size
    return boxes


# ---------------------------------------------------------------- the page and a job


def test_page_holds_the_contract_elements(generator):
    with served(generator) as (client, _pool, _):
        page = client.get("/")
        script = client.get("/static/app.js")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for element in (r'<input type="file"[^>]*name="image"', r'<input type="file"[^>]*name="audio"',
                    r'id="start"', r'<video id="live"'):  # fmt: skip
        assert re.search(element, page.text), element
    assert script.status_code == 200 and "MediaSource" in script.text


def test_a_job_streams_the_same_mp4_it_serves(generator, photo, speech):
    with served(generator) as (client, pool, _):
        answer = client.post("/api/jobs", files=files(photo, speech))
        assert answer.status_code == 202, answer.text
        job_id = answer.json()["id"]
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", job_id)
        streamed, code = read_stream(client, job_id)
        status = wait_status(client, job_id, {"done", "failed"})
        video = client.get(f"/api/jobs/{job_id}/video")
        late, late_code = read_stream(client, job_id)  # a late joiner gets it all replayed
        folder = pool.get(job_id).folder
    assert status["status"] == "done", status
    assert status["progress"] == 1.0 and status["position"] is None and status["fps"] > 0
    assert 0 < status["first_frame_s"] < 60
    assert status["mime"].startswith('video/mp4; codecs="avc1.')
    assert code == 1000 and late_code == 1000
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert streamed == video.content == late
    boxes = top_level_boxes(streamed)  # init segment (ftyp, moov) first, then fragments
    assert boxes[:2] == ["ftyp", "moov"] and "moof" in boxes and "mdat" in boxes
    frames, seconds, vcodec, acodec = mp4_contents(video.content)
    assert (vcodec, acodec) == ("h264", "aac")
    assert frames == status["total_frames"] == round(SPEECH_SECONDS * 25)
    # the decoded AAC holds the encoder's priming frame and a padded last frame: 2 x 1024
    assert 0 <= seconds - SPEECH_SECONDS <= 2 * 1024 / 16000
    assert not folder.exists()  # the pool shut down: every file removed


# ---------------------------------------------------------------- uploads


def test_uploads_are_checked_by_decoding(generator, photo, speech, tmp_path):
    text = b"hello, I am not a picture"
    with served(generator) as (client, pool, _):
        cases = [
            (files(text, speech), 400, r"^image: not an image"),
            (files(speech, speech), 400, r"^image: not an image"),  # a wav named as a photo
            (files(photo, photo), 400, r"^audio: not an audio file"),  # a png as speech
            (files(photo, b""), 400, r"^audio: the file is empty"),
            (files(photo, speech[:60]), 400, r"^audio: 0\.0\d+ s is too short"),  # truncated
            ({"image": ("a.png", photo)}, 400, r"^audio: missing"),
        ]
        for form, status, pattern in cases:
            assert_one_line_error(client.post("/api/jobs", files=form), status, pattern)
        garbage = client.post(
            "/api/jobs", content=b"--x\r\nnot really\r\n",
            headers={"content-type": "multipart/form-data; boundary=x"},
        )  # fmt: skip
        assert garbage.status_code == 400 and set(garbage.json()) == {"error"}
        plain = client.post("/api/jobs", content=b"{}", headers={"content-type": "text/json"})
        assert_one_line_error(plain, 400, r"^image: missing")
        leftovers = list(pool.root.iterdir())
    assert leftovers == []  # refused uploads leave no files


def test_size_caps_answer_413(generator, photo, speech):
    limits = {"max_image_bytes": 40_000, "max_image_pixels": 1_000_000,
              "max_audio_bytes": 100_000, "max_audio_seconds": 2.0}  # fmt: skip
    long_speech = io.BytesIO()
    soundfile.write(long_speech, np.zeros(3 * 16000, np.float32), 16000, format="WAV")
    with served(generator, **limits) as (client, _pool, _):
        too_many_bytes = files(photo + b"\0" * 40_000, speech)
        assert_one_line_error(client.post("/api/jobs", files=too_many_bytes), 413,
                              r"^image: larger than the limit")  # fmt: skip
        # 2000x2000 black compresses to a few kB: the pixel cap, not the byte cap, refuses it
        big = png(2000, 2000)
        assert len(big) < 40_000
        answer = client.post("/api/jobs", files=files(big, speech))
        assert_one_line_error(answer, 413, r"^image: 2000x2000 is 4\.0 megapixels, over the limit")
        answer = client.post("/api/jobs", files=files(photo, long_speech.getvalue()))
        assert_one_line_error(answer, 413, r"^audio: 3 s is longer than the limit of 2 s")
        huge = {"content-length": str(10**9), "content-type": "x/y"}
        declared = client.post("/api/jobs", content=b"x", headers=huge)
        assert_one_line_error(declared, 413, r"^request too large")


@pytest.mark.parametrize(("container", "codec"), [("webm", "libopus"), ("ogg", "libopus")])
def test_browser_recordings_decode(container, codec, tmp_path):
    """MediaRecorder sends webm/opus (Chrome) or ogg/opus (Firefox): PyAV decodes both."""
    path = tmp_path / "audio"
    path.write_bytes(encode_audio(1.3, container, codec))
    assert abs(check_audio(path, 60.0) - 1.3) < 0.03  # opus pre-skip / last-frame padding
    with pytest.raises(UploadTooLarge, match="longer than the limit of 1 s"):
        check_audio(path, 1.0)


def test_a_recording_is_accepted(generator, photo):
    with served(generator, gate=True) as (client, pool, _):
        answer = client.post("/api/jobs", files=files(photo, encode_audio(1.0, "webm", "libopus")))
        assert answer.status_code == 202, answer.text
        pool.cancel(pool.get(answer.json()["id"]))


# ---------------------------------------------------------------- ids, queue, cancel


def test_unknown_ids_and_no_listing(generator, photo, speech):
    with served(generator, gate=True) as (client, _pool, _gate):
        for url in ("/api/jobs/nope", "/api/jobs/nope/video", "/static/%2e%2e/app.py"):
            assert_one_line_error(client.get(url), 404, r"")
        assert client.get("/api/jobs").status_code in (404, 405)  # no listing of jobs
        with (
            pytest.raises(WebSocketDisconnect) as closed,
            client.websocket_connect("/api/jobs/nope/stream") as ws,
        ):
            ws.receive_bytes()
        assert closed.value.code == CLOSE_UNKNOWN
        ids = {client.post("/api/jobs", files=files(photo, speech)).json()["id"] for _ in range(3)}
        assert len(ids) == 3
        early = client.get(f"/api/jobs/{next(iter(ids))}/video")
        assert_one_line_error(early, 409, r"not done yet")


def test_queue_positions_and_429(generator, photo, speech):
    with served(generator, gate=True, max_queue=2) as (client, pool, gate):
        ids = [client.post("/api/jobs", files=files(photo, speech)).json()["id"]]
        wait_status(client, ids[0], {"running"})
        ids += [client.post("/api/jobs", files=files(photo, speech)).json()["id"] for _ in "ab"]
        positions = [client.get(f"/api/jobs/{i}").json()["position"] for i in ids]
        assert positions == [None, 1, 2]
        full = client.post("/api/jobs", files=files(photo, speech))
        assert_one_line_error(full, 429, r"^the queue is full \(2 jobs waiting\)")
        assert full.headers["retry-after"].isdigit()
        assert len(list(pool.root.iterdir())) == 3  # the refused job left no folder
        gate.open()
        finals = [wait_status(client, i, {"done", "failed"}) for i in ids]
    assert [f["status"] for f in finals] == ["done"] * 3


def test_the_last_watcher_leaving_cancels_the_job(generator, photo, speech):
    with served(generator, gate=True) as (client, pool, _gate):
        job_id = client.post("/api/jobs", files=files(photo, speech)).json()["id"]
        wait_status(client, job_id, {"running"})
        folder = pool.get(job_id).folder
        with client.websocket_connect(f"/api/jobs/{job_id}/stream"):
            with client.websocket_connect(f"/api/jobs/{job_id}/stream"):
                pass  # one of two watchers leaves: the job goes on
            time.sleep(0.3)
            assert client.get(f"/api/jobs/{job_id}").json()["status"] == "running"
        final = wait_status(client, job_id, {"done", "failed"}, timeout=10)
        assert final == {**final, "status": "failed", "error": CANCELLED_MESSAGE}
        assert not folder.exists()
        queued = client.post("/api/jobs", files=files(photo, speech)).json()["id"]
        with client.websocket_connect(f"/api/jobs/{queued}/stream"):
            pass
        assert wait_status(client, queued, {"failed"}, timeout=10)["error"] == CANCELLED_MESSAGE


def test_finished_jobs_expire_with_their_files(generator, photo, speech):
    with served(generator, job_ttl_s=1.0) as (client, pool, _):
        job_id = client.post("/api/jobs", files=files(photo, speech)).json()["id"]
        wait_status(client, job_id, {"done"})
        folder = pool.get(job_id).folder
        assert (folder / "video.mp4").is_file()
        deadline = time.monotonic() + 10
        while pool.get(job_id) is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get(f"/api/jobs/{job_id}").status_code == 404
        assert not folder.exists()
        root = pool.root
    assert not root.exists()  # shutdown removed the pool's folder


# ---------------------------------------------------------------- errors never show a traceback


def test_failures_are_one_line_without_traceback(generator, photo, speech, monkeypatch):
    flat = png(64, 64)  # no person: the generator refuses it while the job runs
    with served(generator) as (client, _pool, _):
        job_id = client.post("/api/jobs", files=files(flat, speech)).json()["id"]
        status = wait_status(client, job_id, {"done", "failed"})
        error = "image: no person found (no face visible); use a photo of one person"
        assert status == {**status, "status": "failed", "error": error}
        assert "cospeech-serve-" not in status["error"]
        _data, code = read_stream(client, job_id)
        assert code == CLOSE_FAILED

        def broken(*_args):
            raise RuntimeError("secret internals /srv/x")

        monkeypatch.setattr("cospeech.serve.app.check_image", broken)
        answer = client.post("/api/jobs", files=files(photo, speech))
        assert_one_line_error(answer, 500, r"^internal server error")
        assert "secret" not in answer.text
        monkeypatch.undo()
        monkeypatch.setattr("cospeech.media.fragmented.FragmentedMp4Writer", broken)
        job_id = client.post("/api/jobs", files=files(photo, speech)).json()["id"]
        status = wait_status(client, job_id, {"done", "failed"})
        assert status["error"] == INTERNAL_MESSAGE


def test_pool_size_follows_the_speed():
    assert workers_for_speed(10.0, 25.0) == 1  # slower than real time: one job at a time
    assert workers_for_speed(25.0, 25.0) == 1
    assert workers_for_speed(99.0, 25.0) == 3  # 3 x 25 <= 99 < 4 x 25
    with pytest.raises(InputError):
        workers_for_speed(float("nan"), 25.0)


# ---------------------------------------------------------------- a real server


def raw_request(address: str, payload: bytes, hold_s: float = 0.0) -> bytes:
    """Send ``payload`` on a fresh TCP connection (maybe stalling ``hold_s`` first) and
    return whatever comes back within 5 s."""
    host, port = re.match(r"http://([\d.]+):(\d+)/", address).groups()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(payload[: len(payload) // 2])
        time.sleep(hold_s)
        sock.sendall(payload[len(payload) // 2 :])
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def read_rest_of_response(conn: socket.socket, received: bytes) -> bytes:
    """What follows ``received`` (the first bytes of an HTTP response) up to the end of its
    body (``Content-Length``): a loaded machine may deliver the headers and the body in
    separate segments, so one ``recv`` can stop after the headers."""
    rest = b""
    while b"\r\n\r\n" not in received + rest:
        chunk = conn.recv(65536)
        if not chunk:
            return rest
        rest += chunk
    head, _, body = (received + rest).partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    missing = int(length.group(1)) - len(body) if length else 0
    while missing > 0 and (chunk := conn.recv(65536)):
        rest += chunk
        missing -= len(chunk)
    return rest


def test_a_request_storm_leaves_the_server_serving(model_folder, photo, speech):
    import httpx

    rng = np.random.default_rng(0)
    head = (b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            b"boundary=zz\r\nContent-Length: %d\r\n\r\n")  # fmt: skip
    before = set(Path(tempfile.gettempdir()).glob("cospeech-serve-*"))
    with real_server("--model", str(model_folder)) as server:  # pool sized by measuring
        address, process = server.address, server.process
        speed = float(re.search(r"one job generates ([\d.]+) frames/s", server.startup[-3])[1])
        workers = int(re.match(r"(\d+) job\(s\) at once", server.startup[-2])[1])
        assert workers == workers_for_speed(speed, 25.0)
        made = set(Path(tempfile.gettempdir()).glob("cospeech-serve-*")) - before
        assert len(made) == 1  # the server's private folder
        storm = [
            b"GARBAGE\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
            head % 100_000 + b"--zz\r\nContent-Disposition: form-data; name=image",  # truncated
            head % 50 + rng.bytes(50),  # random bytes as a multipart body
            head % 10**10,  # declares 10 GB
            b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: multipart/form-data; boundary=zz\r\n\r\n5\r\n--zz\r\n",
        ]
        threads = [threading.Thread(target=raw_request, args=(address, p, 0.5)) for p in storm * 5]
        for thread in threads:
            thread.start()
        with httpx.Client(base_url=address, timeout=30) as client:
            while any(thread.is_alive() for thread in threads):  # answers during the storm
                assert client.get("/").status_code == 200
                time.sleep(0.1)
            for thread in threads:
                thread.join(30)
            answer = client.post("/api/jobs", files=files(photo, speech))
            assert answer.status_code == 202, answer.text
            job_id = answer.json()["id"]
            deadline = time.monotonic() + WAIT_S
            while client.get(f"/api/jobs/{job_id}").json()["status"] not in ("done", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.1)
            assert client.get(f"/api/jobs/{job_id}").json()["status"] == "done"
        assert process.poll() is None
    assert not any(folder.exists() for folder in made)  # SIGTERM: every file removed


def test_four_clients_at_once(model_folder, photo, speech):
    """4 clients upload and watch their streams at once; every job finishes. Prints time
    to first frame (upload sent -> first fragment received) and throughput."""
    import httpx
    from websockets.sync.client import connect

    results: dict[int, dict] = {}

    def client_run(index: int, address: str) -> None:
        started = time.monotonic()
        with httpx.Client(base_url=address, timeout=WAIT_S) as client:
            job_id = client.post("/api/jobs", files=files(photo, speech)).json()["id"]
        first, size = None, 0
        url = address.replace("http", "ws") + f"api/jobs/{job_id}/stream"
        with connect(url, open_timeout=30, close_timeout=5) as ws:
            for message in ws:  # ends when the server closes the stream normally
                size += len(message)
                if first is None and b"moof" in message:
                    first = time.monotonic() - started
        with httpx.Client(base_url=address, timeout=30) as client:
            status = client.get(f"/api/jobs/{job_id}").json()
        results[index] = {"first": first, "end": time.monotonic() - started, "bytes": size,
                          "status": status}  # fmt: skip

    flags = ("--model", str(model_folder), "--workers", "2", "--max-queue", "4")
    with real_server(*flags) as server:
        address, process = server.address, server.process
        rss_before = _peak_rss_mb(process.pid)
        started = time.monotonic()
        threads = [threading.Thread(target=client_run, args=(i, address)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(2 * WAIT_S)
        wall = time.monotonic() - started
        rss_after = _peak_rss_mb(process.pid)
    assert len(results) == 4 and all(r["status"]["status"] == "done" for r in results.values())
    firsts = sorted(r["first"] for r in results.values())
    frames = sum(r["status"]["total_frames"] for r in results.values())
    report = {
        "ttff_p50_s": statistics.median(firsts),
        "ttff_p95_s": float(np.percentile(firsts, 95)),
        "throughput_fps": frames / wall,
        "wall_s": wall,
        "frames": frames,
        "peak_rss_mb": [rss_before, rss_after],
    }
    print("serve load:", json.dumps(report))
    assert rss_after - rss_before < 1024  # 4 clients do not grow the server by a GiB


def _peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def test_cli_errors_are_one_line(model_folder):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        cases = [
            (["--workers", "0"], r"--workers must be in \[1, 64\], got 0"),
            (["--workers", "2", "--speed", "30"], r"give one of them"),
            (["--workers", "1", "--max-audio-seconds", "0"], r"--max-audio-seconds must be in"),
            (["--workers", "1", "--port", str(port)], rf"cannot listen on 127\.0\.0\.1:{port}: "),
            # 99999 once wrapped to 99999 - 65536 = 34463 and served there
            (["--workers", "1", "--port", "99999"], r"--port must be in \[0, 65535\], got 99999"),
            (["--workers", "1", "--port", "-1"], r"--port must be in \[0, 65535\], got -1"),
        ]  # fmt: skip
        for flags, pattern in cases:
            done = subprocess.run(
                [*COSPEECH, "serve", "--model", str(model_folder), *flags],
                env=ENV, capture_output=True, text=True, timeout=WAIT_S,
            )  # fmt: skip
            assert done.returncode == 2, (flags, done.stderr)
            lines = done.stderr.strip().splitlines()
            assert len(lines) == 1 and re.search(pattern, lines[0]), (flags, done.stderr)


def test_a_stalled_upload_is_dropped(generator, photo, monkeypatch):
    """uvicorn in this process (TestClient reads a body whole before the app sees it)."""
    import uvicorn

    from cospeech.serve.server import bind

    monkeypatch.setattr("cospeech.serve.app.BODY_IDLE_TIMEOUT_S", 0.5)
    head = (b"POST /api/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
            b"boundary=zz\r\nContent-Length: 100000\r\n\r\n--zz\r\n")  # fmt: skip
    settings = ServeSettings(workers=1)
    with running_pool(generator, settings, 1) as pool, bind("127.0.0.1", 0) as sock:
        server = uvicorn.Server(uvicorn.Config(create_app(pool, settings), log_level="error"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while not server.started and time.monotonic() < deadline:
                time.sleep(0.05)
            with socket.create_connection(("127.0.0.1", sock.getsockname()[1]), 10) as conn:
                conn.sendall(head)  # 100000 bytes announced, a few sent, then nothing
                started = time.monotonic()
                answer = conn.recv(65536)
                waited = time.monotonic() - started
                answer += read_rest_of_response(conn, answer)
        finally:
            server.should_exit = True
            thread.join(30)
        assert list(pool.root.iterdir()) == []
    status_line, _, body = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer
    assert json.loads(body.split(b"\r\n\r\n", 1)[1]) == {
        "error": "the upload stalled (nothing received for 0.5 s)"
    }
    assert 0.4 < waited < 5.0

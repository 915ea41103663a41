"""``avfed cardio serve``: heart rate as a service, for any page or app that streams.

A FastAPI app served by uvicorn. ``GET /`` is a small page (``static/``) that streams
the camera and microphone — or a video file it plays — and draws the live BPM. The
WebSocket ``/ws`` is the service itself; one connection is one session with its own
:class:`~avfed.cardio.pipeline.CardioEstimator`, created on connect and dropped on
disconnect, so sessions never see each other's frames and a closed one frees its state.

Protocol (client → server), every message binary: a 4-byte little-endian header length,
a JSON header, then the payload.

* ``{"type": "frame", "t": seconds}`` + a JPEG or PNG image (what a browser canvas
  gives), or ``{"type": "frame", "t": s, "format": "rgb", "width": W, "height": H}`` +
  raw RGB bytes;
* ``{"type": "audio", "t": seconds, "rate": Hz}`` + float32 little-endian mono samples.

``t`` is the capture time on the client's clock (the same clock for both kinds); frames
may come at any rate and audio chunks with any offset and jitter: the estimator puts
both on one uniform timeline by these timestamps.

Server → client, JSON text: ``{"type": "update", ...}`` (an
:class:`~avfed.cardio.pipeline.Update`) as estimates complete, and ``{"type":
"refused", "status": ..., "detail": ...}`` for a message that cannot be used (an
undecodable image, a bad header, a message over the size limit, a refused frame or
timestamp). Nothing refused ever reaches an estimate, and the session goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parent / "static"


@dataclass
class ServiceConfig:
    """What every session's estimator and the server's limits are."""

    method: str = "pos"
    window_s: float = 8.0
    update_every_s: float = 1.0
    detect_every: int = 10
    model_dir: str | None = None
    max_sessions: int = 16
    max_message_bytes: int = 2_000_000
    demo_files: dict[str, Path] = field(default_factory=dict)  # name -> file under /media/


class SessionRegistry:
    """Live sessions by id; the only state the server keeps between messages."""

    def __init__(self) -> None:
        self.sessions: dict[int, object] = {}
        self.opened = self.closed = 0
        self._next = 0

    def open(self, estimator: object) -> int:
        self._next += 1
        self.sessions[self._next] = estimator
        self.opened += 1
        return self._next

    def close(self, session_id: int) -> None:
        if self.sessions.pop(session_id, None) is not None:
            self.closed += 1


def parse_message(data: bytes) -> tuple[dict, bytes]:
    """Split a binary message into its JSON header and payload (``ValueError`` if bad)."""
    if len(data) < 4:
        raise ValueError("message shorter than its 4-byte header length")
    (size,) = struct.unpack("<I", data[:4])
    if size > len(data) - 4 or size > 4096:
        raise ValueError(f"header length {size} does not fit the {len(data)}-byte message")
    try:
        header = json.loads(data[4:4 + size])
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"header is not JSON ({err})") from None
    if not isinstance(header, dict) or header.get("type") not in ("frame", "audio"):
        raise ValueError("header must be a JSON object with type 'frame' or 'audio'")
    return header, data[4 + size:]


def pack_message(header: dict, payload: bytes) -> bytes:
    """The client side of :func:`parse_message` (tests, benchmarks, Python clients)."""
    encoded = json.dumps(header).encode()
    return struct.pack("<I", len(encoded)) + encoded + payload


def decode_frame(header: dict, payload: bytes) -> np.ndarray:
    """The RGB frame of a ``frame`` message (``ValueError`` when it does not decode)."""
    if header.get("format") == "rgb":
        w, h = int(header.get("width", 0)), int(header.get("height", 0))
        if w <= 0 or h <= 0 or len(payload) != w * h * 3:
            raise ValueError(f"raw frame of {len(payload)} bytes is not {w}×{h}×3")
        return np.frombuffer(payload, np.uint8).reshape(h, w, 3)
    import cv2

    image = cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"the {len(payload)}-byte image does not decode (corrupt or not "
                         "JPEG/PNG)")
    return np.ascontiguousarray(image[..., ::-1])


def handle_message(estimator, data: bytes, limit: int) -> list[dict]:
    """Apply one client message to a session's estimator; the replies to send."""
    if len(data) > limit:
        return [{"type": "refused", "status": "too_large",
                 "detail": f"message of {len(data)} bytes is over the {limit}-byte limit"}]
    try:
        header, payload = parse_message(data)
        t = float(header.get("t", "nan"))
        if header["type"] == "frame":
            updates = estimator.push_frame(decode_frame(header, payload), t)
        else:
            if len(payload) % 4:
                raise ValueError(f"audio payload of {len(payload)} bytes is not float32")
            refused = estimator.push_audio(np.frombuffer(payload, "<f4"), t,
                                           int(header.get("rate", 0)))
            updates = [refused] if refused is not None else []
    except (ValueError, TypeError) as err:
        return [{"type": "refused", "status": "bad_message", "detail": str(err)}]
    replies = []
    for update in updates:
        row = update.as_dict()
        kind = "refused" if update.status.startswith("bad_") else "update"
        replies.append({"type": kind, **row})
    return replies


def create_app(config: ServiceConfig | None = None) -> FastAPI:
    """The FastAPI application (``app.state.sessions`` is the live-session registry)."""
    from avfed.cardio.pipeline import CardioEstimator

    config = config or ServiceConfig()
    model = None
    if config.model_dir:
        from avfed.cardio.task import load_model_spec

        model = load_model_spec(config.model_dir)
    app = FastAPI(title="CardioLive", docs_url=None, redoc_url=None)
    registry = SessionRegistry()
    app.state.sessions = registry
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/health")
    async def health() -> JSONResponse:
        return JSONResponse({"sessions": len(registry.sessions), "opened": registry.opened,
                             "closed": registry.closed, "method": config.method})

    @app.get("/media/{name}")
    async def media(name: str):
        path = config.demo_files.get(name)
        if path is None:
            return JSONResponse({"error": f"no media named {name}"}, status_code=404)
        return FileResponse(path)

    @app.websocket("/ws")
    async def stream(ws: WebSocket) -> None:
        await ws.accept()
        if len(registry.sessions) >= config.max_sessions:
            await ws.send_text(json.dumps({"type": "refused", "status": "busy", "detail":
                                           f"{config.max_sessions} sessions already open"}))
            await ws.close(code=1013)
            return
        estimator = CardioEstimator(method=config.method, window_s=config.window_s,
                                    update_every_s=config.update_every_s,
                                    detect_every=config.detect_every, model=model)
        session = registry.open(estimator)
        await ws.send_text(json.dumps({"type": "hello", "session": session,
                                       "method": estimator._method_name(),
                                       "window_s": config.window_s,
                                       "max_message_bytes": config.max_message_bytes}))
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                if data is None:
                    text = message.get("text") or ""
                    replies = [{"type": "refused", "status": "bad_message",
                                "detail": "send binary messages (header length, JSON "
                                f"header, payload); got {len(text)} characters of text"}]
                else:
                    replies = await asyncio.to_thread(handle_message, estimator, data,
                                                      config.max_message_bytes)
                for reply in replies:
                    await ws.send_text(json.dumps(reply))
        except WebSocketDisconnect:
            pass
        finally:
            registry.close(session)

    return app


def serve(args: argparse.Namespace) -> None:
    """Run the service (``avfed cardio serve``) until interrupted."""
    import uvicorn

    config = ServiceConfig(method=args.method, window_s=args.window, update_every_s=args.every,
                           detect_every=args.detect_every, model_dir=args.model,
                           max_sessions=args.max_sessions,
                           max_message_bytes=args.max_message_bytes)
    if args.demo:
        from avfed.cardio.pulse_av import demo_clip

        config.demo_files["pulse_av.webm"] = demo_clip(suffix=".webm")
    app = create_app(config)
    print(f"CardioLive on http://{args.host}:{args.port}/  (WebSocket /ws; Ctrl-C stops)")
    # uvicorn closes a connection whose message exceeds ws_max_size (code 1009); below
    # that, the app refuses over-limit messages itself and the session goes on
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning",
                ws_max_size=4 * config.max_message_bytes)

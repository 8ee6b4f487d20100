"""A local OpenAI-compatible stand-in: the real `openai` client talks to it over HTTP on 127.0.0.1.

Each endpoint has a queue of scripted responses (served in order); when a queue is empty a default
success is served: chat -> `per_reply` fresh numbered prompts, images -> a small real PNG with a
revised prompt. Every request is recorded (path, headers, JSON body) for assertions.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

CHAT, IMAGES = "/v1/chat/completions", "/v1/images/generations"


def png_bytes(size: int = 16, shade: int = 0) -> bytes:
    from PIL import Image

    img = Image.new("RGB", (size, size))
    img.putdata([(x * 16 % 256, y * 16 % 256, shade % 256) for y in range(size) for x in range(size)])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def chat_reply(text: str) -> tuple[int, dict]:
    return 200, {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4",
        "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def image_reply(png: bytes | None = None, revised: str | None = "a revised prompt", shade: int = 0) -> tuple[int, dict]:
    item = {"b64_json": base64.b64encode(png or png_bytes(shade=shade)).decode()}
    if revised is not None:
        item["revised_prompt"] = revised
    return 200, {"created": 0, "data": [item]}


def error(status: int, code: str | None = None, message: str = "stand-in error") -> tuple[int, dict]:
    return status, {
        "error": {
            "message": message,
            "type": "invalid_request_error" if status == 400 else "server_error",
            "param": None,
            "code": code,
        }
    }


class StandIn:
    def __init__(self, per_reply: int = 30):
        self.per_reply = per_reply
        self.queues: dict[str, deque] = {CHAT: deque(), IMAGES: deque()}
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._fresh = itertools.count()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)  # fast shutdown

    def script(self, path: str, *responses) -> None:
        """Queue responses: (status, body) tuples, or callables body_json -> (status, body)."""
        with self._lock:
            self.queues[path].extend(responses)

    def calls(self, path: str) -> list[dict]:
        with self._lock:
            return [r for r in self.requests if r["path"] == path]

    def _default(self, path: str, body: dict) -> tuple[int, dict]:
        if path == CHAT:
            lines = [
                f"{i + 1}. A stand-in scene number {next(self._fresh)}, in the style of a test"
                for i in range(self.per_reply)
            ]
            return chat_reply("Here are more prompts:\n" + "\n".join(lines))
        # A different picture each time: identical bytes would be one image_id, kept once per shard.
        return image_reply(png_bytes(shade=next(self._fresh)), revised=f"revised: {body.get('prompt')}")

    def _respond(self, path: str, headers: dict, body: dict) -> tuple[int, dict]:
        with self._lock:
            self.requests.append({"path": path, "headers": headers, "body": body})
            queued = self.queues[path].popleft() if self.queues.get(path) else None
        if queued is None:
            return self._default(path, body)
        return queued(body) if callable(queued) else queued

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                if self.path not in standin.queues:
                    status, payload = error(404, message=f"no route {self.path}")
                else:
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    status, payload = standin._respond(self.path, headers, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep test output quiet
                pass

        return Handler

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def openai_standin():
    with StandIn() as s:
        yield s

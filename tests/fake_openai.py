"""A fake OpenAI-compatible HTTP server for tests: /v1/embeddings (and later chat completions).

Responses are deterministic (hash-based vectors) and scriptable: queue status codes to return before
succeeding, add a delay. It runs on 127.0.0.1 in a thread and is reached through the real LiteLLM client.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def fake_vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [((digest[i % len(digest)] + i * 7) % 251) / 250.0 - 0.5 for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failures: deque[int] = deque()
        self.delay = 0.0
        self.default_dimensions = 8
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                owner.requests.append({"path": self.path, "body": body,
                                       "authorization": self.headers.get("authorization")})
                if owner.failures:
                    status = owner.failures.popleft()
                    self._send(status, {"error": {"message": f"scripted {status}", "type": "rate_limit_error"
                                                  if status == 429 else "server_error", "code": None}})
                    return
                if self.path.endswith("/embeddings"):
                    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    dims = int(body.get("dimensions") or owner.default_dimensions)
                    data = [{"object": "embedding", "index": i, "embedding": fake_vector(str(t), dims)}
                            for i, t in enumerate(inputs)]
                    self._send(200, {"object": "list", "data": data, "model": body.get("model"),
                                     "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}})
                    return
                self._send(404, {"error": {"message": "not found"}})

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

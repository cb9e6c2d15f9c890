"""A fake OpenAI-compatible HTTP server for tests: /v1/embeddings and /v1/chat/completions.

It runs on 127.0.0.1 in a thread and is reached through the real LiteLLM/DSPy client path. Chat answers are
written in DSPy's chat-adapter format for whatever output fields the prompt asks for, with deterministic
defaults (the answer quotes the question, so concurrent requests can check they got their own answer) that a
test can override per field (``fields``), possibly with a function of the request. Scriptable: statuses to
return before succeeding (``failures`` for every endpoint, ``chat_failures`` for chat), ``Retry-After``,
and delays (before answering, between streamed chunks, or for single requests: ``chat_stalls``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FieldValue = Any | Callable[[dict[str, Any], str], Any]


def fake_vector(text: str, dimensions: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    raw = [((digest[i % len(digest)] + i * 7) % 251) / 250.0 - 0.5 for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


def _base64_vector(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return str(content or "")


def output_fields(messages: list[dict[str, Any]]) -> list[str]:
    """The output field names DSPy's chat adapter asks for, in order."""
    system = next((_text(m["content"]) for m in messages if m.get("role") == "system"), "")
    block = system.split("Your output fields are:", 1)[-1].split("All interactions", 1)[0]
    return re.findall(r"^\d+\.\s+`(\w+)`", block, flags=re.MULTILINE)


def input_field(messages: list[dict[str, Any]], name: str) -> str:
    """The value of input field ``name`` in the last user message."""
    user = next((_text(m["content"]) for m in reversed(messages) if m.get("role") == "user"), "")
    match = re.search(rf"\[\[ ## {name} ## \]\]\n(.*?)(?=\n\n\[\[ ## |\Z)", user, flags=re.DOTALL)
    return match.group(1).strip() if match else ""


def default_value(field: str, body: dict[str, Any]) -> Any:
    messages = body.get("messages", [])
    query = input_field(messages, "query")
    if field == "reasoning":
        return "The documentation in the context answers this."
    if field == "answer":
        return f"ANSWER<{query}> Use the documented API [1].\n\n```cairo\nfn main() {{}}\n```"
    if field == "search_queries":
        return [query] if query else []
    if field == "resources":
        return ["cairo_book", "corelib_docs", "starknet_foundry", "scarb_docs", "starknet_docs"]
    if field == "scores":
        documents = input_field(messages, "documents")
        return [1.0] * len(re.findall(r"^\[\d+\]", documents, flags=re.MULTILINE))
    if field == "suggestions":
        return [f"How do I test {query}?", "How do I deploy it?", "Which imports are needed?"]
    return f"{field} value"


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failures: deque[int] = deque()
        self.chat_failures: deque[int] = deque()
        self.chat_stalls: deque[float] = deque()  # seconds a chat request waits before answering, one per request
        self.retry_after: str | None = "0"
        self.delay = 0.0
        self.chat_delay = 0.0
        self.chunk_delay = 0.0
        self.chunk_size = 12
        self.default_dimensions = 8
        self.fields: dict[str, FieldValue] = {}
        self.log_requests = True
        self.reject_base64 = False
        self.stream_outcomes: list[str] = []  # per streamed chat answer: "completed" or "aborted"
        # Faults, one per chat request (before the default behaviour): see ``_fault``.
        self.chat_faults: deque[str] = deque()
        # Faults for streamed chat requests only (a test about a stream is then unaffected by any other call).
        self.stream_faults: deque[str] = deque()
        self.hang_seconds = 10.0
        self.cut_pause = 0.3  # seconds between the last bytes of a ``cut`` stream and the dropped connection
        # Models that are "down": every chat request for one of them gets a 503 (a provider outage, for the
        # circuit breaker and fallback tests), until removed.
        self.down_models: set[str] = set()
        self._lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                if self.path == "/control":  # what a test in another process checks: calls and stream outcomes
                    with owner._lock:
                        chats = [r for r in owner.requests if r["path"].endswith("/chat/completions")]
                        state = {
                            "chat_requests": len(chats),
                            "streamed_chat_requests": sum(1 for r in chats if r["body"].get("stream")),
                            "stream_outcomes": list(owner.stream_outcomes),
                        }
                    self._send(200, state)
                    return
                self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path == "/control":  # a server in another process (benchmarks, the TypeScript tests)
                    if body.get("reset"):
                        owner.reset()
                    for name in ("delay", "chat_delay", "chunk_delay"):
                        if name in body:
                            setattr(owner, name, float(body[name]))
                    if "chunk_size" in body:
                        owner.chunk_size = int(body["chunk_size"])
                    if "down_models" in body:
                        owner.down_models = set(body["down_models"])
                    owner.chat_failures.extend(int(s) for s in body.get("chat_failures", ()))
                    owner.stream_faults.extend(str(f) for f in body.get("stream_faults", ()))
                    owner.log_requests = bool(body.get("log", owner.log_requests))
                    with owner._lock:
                        owner.requests.clear()
                    self._send(200, {"ok": True})
                    return
                with owner._lock:
                    if owner.log_requests:  # a long benchmark turns the log off (it would grow without bound)
                        owner.requests.append(
                            {
                                "path": self.path,
                                "body": body,
                                "time": time.monotonic(),
                                "authorization": self.headers.get("authorization"),
                            }
                        )
                    queue = owner.chat_failures if "chat/completions" in self.path else deque()
                    status = queue.popleft() if queue else (owner.failures.popleft() if owner.failures else 0)
                    if "chat/completions" in self.path and body.get("model") in owner.down_models:
                        status = 503
                    stall = owner.chat_stalls.popleft() if owner.chat_stalls and "chat/completions" in self.path else 0
                    fault = (
                        owner.chat_faults.popleft()
                        if owner.chat_faults and "chat/completions" in self.path and not status
                        else ""
                    )
                    if not fault and not status and owner.stream_faults and body.get("stream"):
                        fault = owner.stream_faults.popleft()
                if stall:
                    time.sleep(stall)  # past the client's timeout: it gives up (and may retry) before the answer
                if status:
                    kind = "rate_limit_error" if status == 429 else "server_error"
                    headers = {"retry-after": owner.retry_after} if owner.retry_after is not None else {}
                    self._send(
                        status, {"error": {"message": f"scripted {status}", "type": kind, "code": None}}, headers
                    )
                    return
                if self.path.endswith("/embeddings"):
                    if owner.delay:
                        time.sleep(owner.delay)
                    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
                    dims = int(body.get("dimensions") or owner.default_dimensions)
                    base64_wanted = body.get("encoding_format") == "base64"  # as OpenAI: little-endian float32
                    if base64_wanted and owner.reject_base64:  # an OpenAI-compatible server without base64
                        self._send(
                            400,
                            {
                                "error": {
                                    "message": "encoding_format not supported",
                                    "type": "invalid_request_error",
                                    "code": None,
                                }
                            },
                        )
                        return
                    data = [
                        {
                            "object": "embedding",
                            "index": i,
                            "embedding": _base64_vector(fake_vector(str(t), dims))
                            if base64_wanted
                            else fake_vector(str(t), dims),
                        }
                        for i, t in enumerate(inputs)
                    ]
                    self._send(
                        200,
                        {
                            "object": "list",
                            "data": data,
                            "model": body.get("model"),
                            "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
                        },
                    )
                    return
                if self.path.endswith("/chat/completions"):
                    if owner.chat_delay:
                        time.sleep(owner.chat_delay)
                    self._chat(body, fault)
                    return
                self._send(404, {"error": {"message": "not found"}})

            def _fault(self, fault: str) -> bool:
                """Faults that replace the whole answer: ``garbage`` (200, not JSON), ``hang`` (never answers
                until the client gives up), ``reset`` (the connection closes before any answer)."""
                if fault == "garbage":
                    data = b"<html>502 Bad Gateway from some proxy</html>"
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return True
                if fault == "hang":
                    time.sleep(owner.hang_seconds)
                    self.close_connection = True
                    return True
                if fault == "reset":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return True
                return False

            def _chat(self, body: dict[str, Any], fault: str = "") -> None:
                """Faults that change the answer: ``empty_choices`` (200 with ``choices: []``), ``empty`` (no
                content), ``length`` (cut at half, finish_reason "length"), ``cut`` (a stream that stops half
                way: no finish_reason, no [DONE])."""
                if self._fault(fault):
                    return
                content = "" if fault == "empty" else owner.completion_text(body)
                usage = owner.usage_for(body, content)
                finish = "stop"
                if fault in ("length", "cut"):
                    content, finish = content[: len(content) // 2], "length"
                base = {
                    "id": f"chatcmpl-{len(owner.requests)}",
                    "created": int(time.time()),
                    "model": body.get("model", "fake-model"),
                }
                if not body.get("stream"):
                    choices = (
                        []
                        if fault == "empty_choices"
                        else [
                            {"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": content}}
                        ]
                    )
                    self._send(200, {**base, "object": "chat.completion", "usage": usage, "choices": choices})
                    return
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.send_header("connection", "close")
                if fault == "cut":  # framed as real providers frame streams, so that a cut is visible
                    self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                chunks = [content[i : i + owner.chunk_size] for i in range(0, len(content), owner.chunk_size)]
                events = [
                    {
                        **base,
                        "object": "chat.completion.chunk",
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"role": "assistant", "content": piece} if i == 0 else {"content": piece},
                                "finish_reason": None,
                            }
                        ],
                    }
                    for i, piece in enumerate(chunks)
                ]
                if fault == "empty_choices":
                    events = [{**base, "object": "chat.completion.chunk", "choices": []}]
                if fault == "cut_eof":  # the same cut in a body delimited by the connection's end (no framing)
                    for event in events:
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                    self.wfile.flush()
                    time.sleep(owner.cut_pause)
                    self.close_connection = True
                    owner.stream_outcomes.append("cut")
                    return
                if fault == "cut":  # the connection drops mid-stream: no finish, no usage, no [DONE], no last chunk
                    for event in events:
                        data = f"data: {json.dumps(event)}\n\n".encode()
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                    self.wfile.flush()
                    # The drop comes a moment after the last bytes, as it does from a provider: the client has
                    # handled what arrived (so the answer is partly out) before it sees the connection go; an
                    # instant drop races the client's own stream consumer and may look like a cut before any text.
                    time.sleep(owner.cut_pause)
                    self.close_connection = True
                    owner.stream_outcomes.append("cut")
                    return
                events.append(
                    {
                        **base,
                        "object": "chat.completion.chunk",
                        "choices": [{"index": 0, "delta": {}, "finish_reason": finish}],
                    }
                )
                if (body.get("stream_options") or {}).get("include_usage"):
                    events.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
                try:
                    for event in events:
                        self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                        self.wfile.flush()
                        if owner.chunk_delay:
                            time.sleep(owner.chunk_delay)
                    self.wfile.write(b"data: [DONE]\n\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    owner.stream_outcomes.append("aborted")  # the client went away mid-stream
                    return
                owner.stream_outcomes.append("completed")
                self.close_connection = True

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (its timeout) before the answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def reset(self) -> None:
        """Back to a fresh server's behaviour (tests share one server per module)."""
        with self._lock:
            self.requests.clear()
        self.failures.clear()
        self.chat_failures.clear()
        self.chat_stalls.clear()
        self.fields.clear()
        self.stream_outcomes.clear()
        self.chat_faults.clear()
        self.stream_faults.clear()
        self.down_models.clear()
        self.retry_after = "0"
        self.delay = self.chat_delay = self.chunk_delay = 0.0
        self.chunk_size = 12
        self.reject_base64 = False
        self.log_requests = True

    def completion_text(self, body: dict[str, Any]) -> str:
        messages = body.get("messages", [])
        query = input_field(messages, "query")
        parts = []
        values: dict[str, Any] = {}
        for name in output_fields(messages):
            value = self.fields.get(name)
            if value is None:
                value = default_value(name, body)
            elif callable(value):
                value = value(body, query)
            values[name] = value
            text = value if isinstance(value, str) else json.dumps(value)
            parts.append(f"[[ ## {name} ## ]]\n{text}")
        if body.get("response_format"):  # DSPy's JSONAdapter (e.g. GEPA's instruction proposer): one JSON object
            return json.dumps(values)
        parts.append("[[ ## completed ## ]]")
        return "\n\n".join(parts)

    def usage_for(self, body: dict[str, Any], content: str | None = None) -> dict[str, int]:
        """The usage the server reports for a chat request (deterministic: about 4 characters a token)."""
        content = self.completion_text(body) if content is None else content
        prompt = sum(len(_text(m.get("content"))) for m in body.get("messages", [])) // 4 + 1
        completion = len(content) // 4 + 1
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def chat_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["path"].endswith("/chat/completions")]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    # Serve in a process of its own (benchmarks: keeps the server's work off the measured process's GIL).
    import sys

    with FakeOpenAI() as fake:
        print(fake.base_url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin

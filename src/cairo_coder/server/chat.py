"""OpenAI-compatible Chat Completions: ``/v1/chat/completions``, per-agent base URLs and the legacy alias.

Streaming answers are Server-Sent Events of ``chat.completion.chunk`` ending with ``data: [DONE]``. cairo-coder's
own events (``processing``, ``sources``, ``final_response``) are named SSE events whose data is also a chunk,
with empty ``choices`` (as OpenAI's own usage chunk) and the event under ``cairo_coder``: OpenAI clients read
them as empty chunks, other clients can listen for them by name.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from cairo_coder import observe
from cairo_coder.errors import ClientDisconnected
from cairo_coder.events import End, ErrorEvent, Final, Processing, Sources, Text, source_dicts, wire_data
from cairo_coder.pipeline import GenerationOptions
from cairo_coder.server.answering import (
    Question,
    answer,
    answer_events,
    check_agent,
    check_limits,
    reject_if,
    stream_with_slot,
    until_disconnect,
)
from cairo_coder.server.deps import Svc, user_hash
from cairo_coder.server.errors import APIError, error_responses, from_error
from cairo_coder.server.schemas import ChatCompletion, ChatCompletionRequest, parse_flag
from cairo_coder.server.state import Services
from cairo_coder.types import RequestUsage

router = APIRouter(tags=["chat"])
ERRORS = error_responses(400, 401, 404, 413, 422, 429, 500, 503)
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
STREAM_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"application/json": {}, "text/event-stream": {"schema": {"type": "string"}}},
        "description": "A chat.completion, or with stream=true an SSE stream of chat.completion.chunk",
    }
}


def mcp_flag(x_mcp_mode: str | None, mcp: str | None) -> bool:
    for name, value in (("x-mcp-mode", x_mcp_mode), ("mcp", mcp)):
        if value is not None:
            try:
                return parse_flag(value)
            except ValueError as exc:
                raise APIError(400, f"header {name}: {exc}", code="invalid_header", param=name) from exc
    return False


def build_question(
    services: Services, body: ChatCompletionRequest, agent_id: str, request: Request, mcp_mode: bool
) -> Question:
    messages = body.messages
    check_limits(services, [(f"messages.{i}.content", m.text()) for i, m in enumerate(messages)], "messages")
    last = messages[-1]
    reject_if(
        last.role != "user",
        422,
        "the last message must be the user's question (role 'user')",
        "last_message_not_user",
        f"messages.{len(messages) - 1}.role",
    )
    query = last.text().strip()
    reject_if(not query, 422, "the user's question is empty", "empty_question", f"messages.{len(messages) - 1}")
    history = [m.to_message() for m in messages[:-1]][-services.settings.pipeline.max_history :]
    max_tokens = body.max_completion_tokens or body.max_tokens
    return Question(
        agent_id=agent_id,
        query=query,
        history=history,
        mcp_mode=mcp_mode,
        options=GenerationOptions(temperature=body.temperature, max_tokens=max_tokens),
        conversation_id=request.headers.get("x-conversation-id"),
        user_hash=user_hash(services, request.headers),
    )


async def complete(
    request: Request, body: ChatCompletionRequest, services: Services, agent_id: str, mcp_mode: bool
) -> Response:
    check_agent(services, agent_id, mcp_mode)
    question = build_question(services, body, agent_id, request, mcp_mode)
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        events = sse_events(services, question, completion_id, created, include_usage)
        return stream_with_slot(services, events, "text/event-stream", SSE_HEADERS)
    async with services.limiter.slot():
        try:
            result = await until_disconnect(request, lambda: answer(services, question))
        except ClientDisconnected:
            return Response(status_code=499)
    completion = ChatCompletion.model_validate(
        {
            "id": completion_id,
            "created": created,
            "model": agent_id,
            "sources": source_dicts(result.sources),
            "citations": result.citations,
            "usage": openai_usage(result.usage),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": result.finish_reason,
                }
            ],
        }
    )
    return Response(completion.model_dump_json(), media_type="application/json")


def _sse(data: Any, event: str | None = None) -> str:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n"


async def sse_events(
    services: Services, question: Question, completion_id: str, created: int, include_usage: bool
) -> AsyncIterator[str]:
    base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": question.agent_id}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    def own(event_type: str, data: Any) -> dict[str, Any]:
        return {**base, "choices": [], "cairo_coder": {"type": event_type, "data": data}}

    first = chunk({"role": "assistant", "content": ""})
    if (request_id := observe.current_request_id()) is not None:
        first["request_id"] = request_id  # as in the X-Request-ID header and the server's logs
    yield _sse(first)
    usage = RequestUsage()
    finish = "stop"
    async for event in answer_events(services, question):
        match event:
            case Text():
                yield _sse(chunk({"content": event.text}))
            case Processing() | Sources():
                yield _sse(own(event.type, wire_data(event)), event.type)
            case Final():
                usage, finish = event.usage, event.finish_reason or "stop"
                yield _sse(own(event.type, wire_data(event)), event.type)
            case End():
                yield _sse(chunk({}, finish))
                if include_usage:
                    yield _sse({**base, "choices": [], "usage": openai_usage(usage)})
            case ErrorEvent():
                yield _sse(from_error(event.error).payload(), "error")
                break
    yield "data: [DONE]\n\n"


def openai_usage(usage: RequestUsage) -> dict[str, int]:
    """The usage object of the OpenAI API (our per-stage breakdown stays in the final_response event)."""
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


McpHeader = Annotated[
    str | None,
    Header(
        alias="x-mcp-mode", description="true/1/yes: return the raw documentation instead of an answer (no LLM needed)."
    ),
]
McpAlias = Annotated[str | None, Header(alias="mcp", description="Same as x-mcp-mode.")]
ConversationHeader = Annotated[
    str | None, Header(alias="x-conversation-id", description="Groups requests of one conversation in query insights.")
]


@router.post(
    "/v1/chat/completions",
    responses={**ERRORS, **STREAM_DOC},
    response_model=ChatCompletion,
    summary="Chat completion with the default agent (or the agent named by `model`)",
)
async def chat_completions(
    request: Request,
    body: ChatCompletionRequest,
    services: Svc,
    x_mcp_mode: McpHeader = None,
    mcp: McpAlias = None,
    x_conversation_id: ConversationHeader = None,
) -> Response:
    mcp_mode = mcp_flag(x_mcp_mode, mcp)
    agent_id = body.model if body.model in services.settings.agents else services.factory.default_agent_id
    return await complete(request, body, services, agent_id or services.factory.default_agent_id, mcp_mode)


@router.post(
    "/v1/agents/{agent_id}/chat/completions",
    responses={**ERRORS, **STREAM_DOC},
    response_model=ChatCompletion,
    summary="Chat completion with one agent (an agent's base URL)",
)
async def agent_chat_completions(
    agent_id: str,
    request: Request,
    body: ChatCompletionRequest,
    services: Svc,
    x_mcp_mode: McpHeader = None,
    mcp: McpAlias = None,
    x_conversation_id: ConversationHeader = None,
) -> Response:
    return await complete(request, body, services, agent_id, mcp_flag(x_mcp_mode, mcp))


@router.post(
    "/chat/completions",
    responses={**ERRORS, **STREAM_DOC},
    response_model=ChatCompletion,
    summary="Legacy alias of /v1/chat/completions",
)
async def legacy_chat_completions(
    request: Request,
    body: ChatCompletionRequest,
    services: Svc,
    x_mcp_mode: McpHeader = None,
    mcp: McpAlias = None,
    x_conversation_id: ConversationHeader = None,
) -> Response:
    return await chat_completions(request, body, services, x_mcp_mode, mcp, x_conversation_id)

"""Follow-up suggestions (``POST /v1/suggestions``) and query insights (``GET /v1/insights/queries``, admin)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import dspy
from fastapi import APIRouter, Query

from cairo_coder.llm_errors import translate_error
from cairo_coder.programs.adapter import ADAPTER
from cairo_coder.rendering import format_history
from cairo_coder.server.answering import check_limits
from cairo_coder.server.deps import AdminSvc, Svc, user_hash
from cairo_coder.server.errors import error_responses, from_exception
from cairo_coder.server.schemas import InsightPage, InsightRecord, SuggestionsRequest, SuggestionsResponse
from cairo_coder.store.insights import MAX_PAGE_SIZE, InsightFilter, find_insights

router = APIRouter()


@router.post(
    "/v1/suggestions",
    response_model=SuggestionsResponse,
    tags=["chat"],
    responses=error_responses(400, 401, 404, 413, 422, 429, 500, 503),
    summary="Follow-up questions for a conversation",
)
async def suggestions(body: SuggestionsRequest, services: Svc) -> SuggestionsResponse:
    agent = services.factory.get_config(body.agent_id or services.factory.default_agent_id)
    check_limits(
        services, [(f"chat_history.{i}.content", m.content) for i, m in enumerate(body.chat_history)], "chat_history"
    )
    lm = services.router.lm("suggestions", agent)
    async with services.limiter.slot():
        try:
            with dspy.context(lm=lm, adapter=ADAPTER, disable_history=True, trace=None):
                prediction = await services.suggestions.acall(
                    chat_history=format_history(body.history(), services.settings.pipeline.max_history)
                )
        except Exception as exc:
            raise from_exception(translate_error(exc) or exc) from exc
    return SuggestionsResponse(suggestions=list(prediction.suggestions))


@router.get(
    "/v1/insights/queries",
    response_model=InsightPage,
    tags=["insights"],
    responses=error_responses(400, 401, 403, 503),
    summary="Recorded queries, newest first (admin key required)",
)
async def insights(
    services: AdminSvc,
    since: Annotated[datetime | None, Query(description="Only records created at or after (ISO 8601).")] = None,
    until: Annotated[datetime | None, Query(description="Only records created before (ISO 8601).")] = None,
    agent_id: Annotated[str | None, Query(max_length=200)] = None,
    text: Annotated[str | None, Query(max_length=500, description="Substring of the query or answer.")] = None,
    conversation_id: Annotated[str | None, Query(max_length=500)] = None,
    user: Annotated[
        str | None,
        Query(max_length=500, description="The user's x-user-id or API key (hashed here the same way), or its hash."),
    ] = None,
    cursor: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="next_cursor of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 20,
) -> InsightPage:
    wanted_user = None
    if user:
        wanted_user = (
            user
            if len(user) == 32 and all(c in "0123456789abcdef" for c in user)
            else user_hash(services, {"x-user-id": user})
        )
    where = InsightFilter(
        since=since,
        until=until,
        agent_id=agent_id,
        text=text,
        conversation_id=conversation_id,
        user_hash=wanted_user,
        cursor=cursor,
        limit=limit,
    )
    rows, has_more = await find_insights(services.store, where)
    records = [InsightRecord.model_validate(r) for r in rows]
    return InsightPage(data=records, has_more=has_more, next_cursor=records[-1].id if has_more and records else None)

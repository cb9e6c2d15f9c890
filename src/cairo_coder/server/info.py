"""Liveness, readiness, and discovery of agents (``/v1/agents``) and models (``/v1/models``, one per agent)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from cairo_coder import __version__, metrics
from cairo_coder.server.deps import Svc
from cairo_coder.server.errors import APIError, error_responses
from cairo_coder.server.page import page_response, wants_page
from cairo_coder.server.schemas import AgentCard, AgentList, Liveness, ModelCard, ModelList, Readiness

router = APIRouter()


@router.head("/", include_in_schema=False)
@router.get(
    "/",
    response_model=Liveness,
    tags=["health"],
    summary="Liveness (also /health); the chat page for browsers (Accept: text/html)",
)
async def root(request: Request) -> Any:
    if wants_page(request):
        return page_response()
    return Liveness(version=__version__)


@router.head("/health", include_in_schema=False)
@router.get("/health", response_model=Liveness, tags=["health"], summary="Liveness: the process answers")
async def health() -> Liveness:
    return Liveness(version=__version__)


@router.get("/metrics", include_in_schema=False)
async def prometheus_metrics(services: Svc) -> Response:
    """Prometheus exposition (metrics.py): this process's, or every worker's with ``serve --workers N``."""
    if not services.settings.server.metrics:
        raise APIError(404, "metrics are disabled (server.metrics = false)", code="not_found")
    size, used = services.store.pool_stats()
    metrics.DB_POOL_SIZE.labels("open").set(size)
    metrics.DB_POOL_SIZE.labels("in_use").set(used)
    try:  # one cheap query per scrape: "database down" and "empty store" alerts need a value without traffic
        metrics.STORE_DOCUMENTS.set(await services.store.count_documents(deadline=0))
        metrics.DATABASE_UP.set(1)
    except Exception:
        metrics.DATABASE_UP.set(0)
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)


@router.head("/ready", include_in_schema=False)
@router.get(
    "/ready",
    response_model=Readiness,
    tags=["health"],
    responses={503: {"model": Readiness, "description": "not ready: database down or no documents"}},
    summary="Readiness: database reachable and documents indexed (LLM reported, not required)",
)
async def ready(services: Svc) -> JSONResponse:
    problems: list[str] = []
    documents = 0
    database = False
    try:
        documents = await services.store.count_documents(deadline=0)  # a probe answers now, it does not retry
        database = True
    except Exception as exc:
        problems.append(f"database unreachable: {type(exc).__name__}")
    if database and documents == 0:
        problems.append("no documents indexed: run `cairo-coder ingest`")
    default = services.factory.get_config(services.factory.default_agent_id)
    llm = services.router.is_configured(default)
    if not llm:
        problems.append("no LLM configured: answers are unavailable, MCP mode and search work")
    ok = database and documents > 0
    status: Literal["ready", "warming", "not_ready"] = "ready" if ok else "not_ready"
    if ok and not services.warm:
        status, ok = "warming", False
        problems.append("warming up: loading the embedding model and running a first search")
    body = Readiness(status=status, database=database, documents=documents, llm_configured=llm, problems=problems)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get(
    "/v1/agents",
    response_model=AgentList,
    tags=["agents"],
    responses=error_responses(401),
    summary="The agents and the documentation sources each one answers from",
)
async def list_agents(services: Svc) -> AgentList:
    default = services.factory.default_agent_id
    return AgentList(
        data=[
            AgentCard(id=a.id, name=a.name, description=a.description, sources=a.sources, default=a.id == default)
            for a in services.factory.agents()
        ]
    )


@router.get(
    "/v1/models",
    response_model=ModelList,
    tags=["chat"],
    responses=error_responses(401),
    summary="The agents, as models for OpenAI clients (use one as `model`)",
)
async def list_models(services: Svc) -> ModelList:
    return ModelList(
        data=[ModelCard(id=agent_id, created=int(services.started_at)) for agent_id in services.factory.agent_ids()]
    )

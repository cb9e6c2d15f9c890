"""cairo-coder as an MCP documentation server (Claude Code, Cursor, Codex ...).

The same tools over streamable HTTP (``/mcp`` of the API server) and stdio (``cairo-coder mcp``):
``search_cairo_docs`` and ``get_cairo_doc_page`` need no LLM; ``ask_cairo_coder`` is offered only when an LLM is
configured, so an agent never sees a tool that can only fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import Field

from cairo_coder import __version__
from cairo_coder.errors import InvalidRequestError
from cairo_coder.rendering import format_for_agent
from cairo_coder.server.answering import Question, answer
from cairo_coder.server.errors import from_exception
from cairo_coder.server.state import Services
from cairo_coder.types import DocumentSource, Message, Role

INSTRUCTIONS = (
    "Documentation of Cairo and Starknet: the Cairo Book, the core library, Starknet docs, Starknet Foundry, "
    "Scarb, OpenZeppelin Contracts for Cairo, Starknet by Example, Dojo and Starknet.js. Search it before "
    "writing or fixing Cairo code: Cairo 2.x syntax and APIs differ from what models remember."
)
SEARCH_RESULTS = 10
SOURCES_HELP = ", ".join(s.value for s in DocumentSource) + ", or one this server's configuration declares"


def build_mcp_server(get_services: Callable[[], Services]) -> MCPServer:
    server = MCPServer(
        name="cairo-coder", title="Cairo Coder", instructions=INSTRUCTIONS, version=__version__, log_level="WARNING"
    )

    @server.tool(title="Search the Cairo and Starknet documentation")
    async def search_cairo_docs(
        query: Annotated[
            str,
            Field(
                min_length=1,
                max_length=2000,
                description="What to look for: a question, an API or item name, an error.",
            ),
        ],
        sources: Annotated[list[str] | None, Field(description=f"Restrict to these sources: {SOURCES_HELP}.")] = None,
        max_tokens: Annotated[
            int | None,
            Field(
                ge=100,
                le=32000,
                description="Token budget of the result (default: the server's pipeline.mcp_max_tokens).",
            ),
        ] = None,
    ) -> str:
        """Search the official Cairo/Starknet documentation and return the most relevant passages, ranked, each
        with its title, URL, source and version. Use it whenever you write, review or debug Cairo code, Starknet
        contracts, Scarb manifests or snforge tests, before relying on memory. Follow a URL with
        get_cairo_doc_page to read the whole page."""
        services = get_services()
        chosen = _sources(services, sources)
        with tool_errors():
            documents = await services.store.search(
                query, k=SEARCH_RESULTS, sources=chosen, mode=services.settings.search.mode
            )
        return format_for_agent(documents, max_tokens or services.settings.pipeline.mcp_max_tokens)

    @server.tool(title="Read one documentation page")
    async def get_cairo_doc_page(
        url: Annotated[
            str, Field(min_length=1, max_length=2000, description="The page URL, as given by search_cairo_docs.")
        ],
    ) -> str:
        """Return a whole documentation page (all its sections, in order) by its URL. Use it after
        search_cairo_docs when a passage is not enough: a full tutorial, every item of a module, a complete
        example contract."""
        with tool_errors():
            page = await get_services().store.page(url)
        if page is None:
            raise ToolError(f"no indexed page has the URL {url!r}; use search_cairo_docs to find page URLs")
        version = f" @ {page.version[:12]}" if page.version else ""
        return f"# {page.title}\nSource: {page.source}{version} — {page.url}\n\n{page.content}\n"

    services_now = get_services()
    default_agent = services_now.factory.get_config(services_now.factory.default_agent_id)
    if services_now.router.is_configured(default_agent):

        @server.tool(title="Ask Cairo Coder")
        async def ask_cairo_coder(
            query: Annotated[str, Field(min_length=1, max_length=20000, description="The question or task.")],
            history: Annotated[
                list[str] | None,
                Field(
                    description="Earlier messages of the conversation, oldest first, alternating user and assistant."
                ),
            ] = None,
            code_snippets: Annotated[
                list[str] | None,
                Field(description="Code the question is about (Cairo files, Scarb.toml, error output)."),
            ] = None,
        ) -> str:
            """Ask Cairo Coder for a complete answer: it searches the documentation and writes Cairo 2.x code
            with cited sources. Use it for how-to questions and to write or fix contracts, components and tests;
            use search_cairo_docs instead when you only need the reference text."""
            services = get_services()
            text = query
            if code_snippets:
                text += "\n\nCode:\n" + "\n\n".join(f"```\n{snippet}\n```" for snippet in code_snippets)
            past = [
                Message(role=Role.USER if i % 2 == 0 else Role.ASSISTANT, content=m)
                for i, m in enumerate(history or [])
            ]
            question = Question(
                agent_id=services.factory.default_agent_id,
                query=text,
                history=past[-services.settings.pipeline.max_history :],
            )
            # The same concurrency limit as every other route that spends LLM calls.
            with tool_errors():
                async with services.limiter.slot():
                    result = await answer(services, question)
            # The sources the answer cites first; the others were retrieved too, and may still help an agent.
            cited = [s for s in result.sources if s.number in result.citations]
            others = [s for s in result.sources if s.number not in result.citations]
            parts = [result.text]
            if result.finish_reason == "length":
                parts.append("(This answer is incomplete: it reached the server's token limit, llm.max_tokens.)")
            for heading, group in (("Sources", cited), ("Also retrieved, not cited" if cited else "Sources", others)):
                if group:
                    parts.append(f"{heading}:\n" + "\n".join(f"[{s.number}] {s.title} — {s.url}" for s in group))
            return "\n\n".join(parts)

    return server


@contextmanager
def tool_errors() -> Iterator[None]:
    """Any failure as a tool error an agent can act on: the message and stable code of the HTTP API's error
    (database unavailable, concurrency limit, LLM failures ...), never a traceback or an anonymous crash."""
    try:
        yield
    except ToolError:
        raise
    except Exception as exc:
        error = from_exception(exc)
        raise ToolError(f"{error.message} ({error.code or error.type}, status {error.status})") from exc


def _sources(services: Services, values: list[str] | None) -> list[str] | None:
    """The sources to search (None: all); ids outside the server's registry are a tool error listing the known."""
    if not values:
        return None
    try:
        return services.settings.check_sources(values)
    except InvalidRequestError as exc:
        raise ToolError(str(exc)) from exc

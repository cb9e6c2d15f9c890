"""The HTTP API server: OpenAI-compatible chat completions, the agent process interface, MCP and health."""

from cairo_coder.server.app import create_app

__all__ = ["create_app"]

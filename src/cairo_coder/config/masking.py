"""Showing the configuration without its secrets (API keys, passwords in database URLs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cairo_coder.config.settings import Settings

SECRET_KEYS = ("api_key", "api_keys", "password", "secret", "_token", "admin_key", "salt")


def masked(settings: Settings) -> dict[str, Any]:
    """The effective configuration as plain data, with secrets (API keys, passwords in URLs) masked."""
    data: dict[str, Any] = _mask(settings.model_dump(mode="json"))
    return data


def mask_url(url: str) -> str:
    """A connection URL with its password masked, for display."""
    return str(_mask(url, "url"))


def _mask(node: Any, key: str = "") -> Any:
    if isinstance(node, dict):
        return {k: _mask(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_mask(v, key) for v in node]
    if isinstance(node, str) and node:
        if key.lower().endswith(SECRET_KEYS) or key.lower() == "token":
            return node[:3] + "…" + "*" * 6 if len(node) > 8 else "******"
        if key == "url" and "@" in node and "://" in node:
            scheme, rest = node.split("://", 1)
            creds, host = rest.rsplit("@", 1)
            user = creds.split(":", 1)[0]
            return f"{scheme}://{user}:******@{host}" if ":" in creds else node
    return node

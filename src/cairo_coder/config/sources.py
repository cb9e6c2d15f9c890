"""The source registry's entries: where a documentation source lives and how its pages map to public URLs.

Built-in sources are declared in defaults.toml; a ``[sources.<id>]`` table of the user's file adds one (a git
repository, or a local folder with ``path``) with no code change.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from cairo_coder.config.sections import _Section

# A source id: what TOML tables, the API, the database and citations use.
SOURCE_ID_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"

UrlStyle = Literal["html", "clean", "antora", "corelib", "mintlify"]
SlugStyle = Literal["mdbook", "vitepress", "github", "antora"]


class SourceConfig(_Section):
    """One documentation source of the registry: where it lives and how its pages map to public URLs."""

    id: str = ""
    name: str
    repository: str = ""
    branch: str = ""
    docs_root: str = "."
    local_root: str = ""
    # A local folder holding the source (instead of a repository); relative paths are relative to the file that
    # declares them. Ingested from there whatever the corpus or the network.
    path: str = ""
    # What the source covers, for the query processor choosing where to search (built-ins have their own).
    description: str = ""
    file_types: list[str] = Field(default_factory=lambda: ["md"])
    base_url: str
    url_style: UrlStyle = "html"
    slug: SlugStyle = "github"
    readme_is_index: bool = False
    strip_prefixes: list[str] = Field(default_factory=list)
    include_paths: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    include_roots: dict[str, str] = Field(default_factory=dict)
    repo_includes: list[str] = Field(default_factory=list)
    variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("an http(s) URL")
        return value.rstrip("/")

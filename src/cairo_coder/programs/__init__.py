"""DSPy programs of the RAG pipeline: query processing, retrieval (with an optional judge), generation."""

from cairo_coder.programs.generation import (
    CairoGenerationSignature,
    GenerationProgram,
    ScarbGenerationSignature,
    format_context,
)
from cairo_coder.programs.loading import OptimizedProgramError, load_optimized
from cairo_coder.programs.query_processor import (
    CAIRO_DEMOS,
    SCARB_DEMOS,
    CairoQuerySignature,
    QueryProcessorProgram,
    ScarbQuerySignature,
    raw_processed_query,
)
from cairo_coder.programs.retriever import DocumentRetrieverProgram, RetrievalJudge

__all__ = [
    "CAIRO_DEMOS",
    "SCARB_DEMOS",
    "CairoGenerationSignature",
    "CairoQuerySignature",
    "DocumentRetrieverProgram",
    "GenerationProgram",
    "OptimizedProgramError",
    "QueryProcessorProgram",
    "RetrievalJudge",
    "ScarbGenerationSignature",
    "ScarbQuerySignature",
    "format_context",
    "load_optimized",
    "raw_processed_query",
]

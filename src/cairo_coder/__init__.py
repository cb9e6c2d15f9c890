"""cairo-coder: Cairo and Starknet answers grounded in the official documentation."""

import os

# Offline first: LiteLLM otherwise downloads its model cost map from the internet when it is imported (offline,
# the first LLM request stalled 22 s on it). Its bundled copy is used instead; set the variable to "False" to
# opt back in. Set here because any module may import LiteLLM (through DSPy) first.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

__version__ = "0.1.0"

"""cairo-coder: Cairo and Starknet answers grounded in the official documentation."""

__version__ = "0.1.0"

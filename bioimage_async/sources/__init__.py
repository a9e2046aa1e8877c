"""Sources: async array-like handles on volumes in every supported format."""

from .base import Source, SourceSpec
from .registry import as_source, create_source, from_spec, infer_format, open_source

__all__ = [
    "Source",
    "SourceSpec",
    "as_source",
    "create_source",
    "from_spec",
    "infer_format",
    "open_source",
]

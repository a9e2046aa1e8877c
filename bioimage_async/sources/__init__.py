"""Sources: async array-like handles on volumes in every supported format."""

from .base import Source, SourceSpec
from .formats import CreateRequest, FormatBackend, formats, register_format
from .location import Location
from .registry import as_source, create_source, from_spec, infer_format, open_source
from .storage import StorageOptions

__all__ = [
    "CreateRequest",
    "FormatBackend",
    "Location",
    "Source",
    "SourceSpec",
    "StorageOptions",
    "as_source",
    "create_source",
    "formats",
    "from_spec",
    "infer_format",
    "open_source",
    "register_format",
]

"""The one translation layer between the library's words and the command line's.

The library's messages name Python arguments (``exist_ok=True``, ``block_shape=(64, 128, 128)``,
``internal_path=``); a CLI user types options (``--overwrite``, ``--block-shape 64,128,128``,
``--key``). Rather than a second set of messages, the CLI rewrites the Python spellings in any
message it prints. ``side`` says whether the message is about the input or the output, since
``format=`` and ``internal_path=`` mean a different option on each side.
"""

from __future__ import annotations

import re

#: Python argument -> the CLI option that sets it (for either side).
OPTIONS = {
    "exist_ok": "--overwrite",
    "block_shape": "--block-shape",
    "block_ids": "--block-ids",
    "resume_from": "--resume",
    "num_workers": "--workers",
    "job_type": "--job-type",
    "tmp_root": "--tmp-root",
    "scale_factor": "--factor",
    "factor": "--factor",
    "casting": "--casting",
    "retries": "--retries",
    "block_timeout": "--block-timeout",
    "output_lock": "--no-output-lock",
    "voxel_size": "--voxel-size",
    "unit": "--unit",
    "chunks": "--chunks",
    "shards": "--shards",
    "compression": "--compression",
    "level": "--level",
    "levels": "--levels",
    "labels": "--labels",
    "ngff_version": "--ngff-version",
    "order": "--order",
    "anti_aliasing": "--anti-aliasing",
    "method": "--method",
    "pattern": "--pattern",
    "wait": "--detach",
}
INPUT_SIDE = {"internal_path": "--key", "format": "--input-format"}
OUTPUT_SIDE = {"internal_path": "--out-key", "format": "--format"}

_ASSIGNMENT = re.compile(
    r"(?<![\w.])(?P<name>[a-z_]+)=(?P<value>\([^)]*\)|\[[^\]]*\]|'[^']*'|\"[^\"]*\"|[\w./~+-]+)?"
)

#: Python calls in messages -> the command that does the same (a folder in quotes, as repr
#: spells it). Ordered: the awaited forms before the bare ones they contain.
_CALLS = [
    (r"await \(await ba\.attach\('([^']*)'\)\)\.wait\(\)", r"bioimage-async status \1 (watch it)"),
    (r"await \(await ba\.attach\('([^']*)'\)\)\.cancel\(\)", r"bioimage-async cancel \1"),
    (r"await ba\.attach\('[^']*'\) \(or: (bioimage-async attach [^)]*)\)", r"\1"),
    (r"await ba\.attach\('([^']*)'\)", r"bioimage-async attach \1"),
    (r"ba\.attach\(\.\.\.\)", "bioimage-async status <run folder>"),
    (
        r"block_ids=ba\.sync\.missing_blocks\('([^']*)'\)",
        r"--block-ids <the ids bioimage-async status \1 lists>",
    ),
    (r" \(await ba\.missing_blocks\(\.\.\.\) in async code\)", ""),
    (r"ba\.sync\.missing_blocks\('([^']*)'\)", r"bioimage-async status \1"),
]


#: Argument names that also appear without a value ("block_ids [5000] are out of range").
_BARE = re.compile(
    r"(?<![\w.\-])(block_ids|block_shape|scale_factor|internal_path|exist_ok|num_workers|"
    r"resume_from|tmp_root|voxel_size|ngff_version|output_lock)(?![\w=])"
)


def _value(text: str | None) -> str:
    """A Python literal as the CLI spells it: tuples and lists comma-separated, no quotes."""
    if not text:
        return ""
    text = text.strip()
    if text[:1] in "([":
        return ",".join(part.strip() for part in text[1:-1].split(",") if part.strip())
    return text.strip("'\"")


def cli_words(message: str, side: str = "input") -> str:
    """``message`` with every Python argument spelling replaced by its CLI option."""
    names = {**OPTIONS, **(INPUT_SIDE if side == "input" else OUTPUT_SIDE)}

    def replace(match: re.Match[str]) -> str:
        name, value = match.group("name"), match.group("value")
        option = names.get(name)
        if option is None:
            return match.group(0)
        if value in ("True", None) or option == "--no-output-lock":
            if name == "block_ids" and value and value.startswith("error."):
                return f"{option} <the failed ids>"
            return option if value in ("True", "False", None) else f"{option} {_value(value)}"
        if value == "False":
            return f"(omit {option})"
        if name == "block_ids" and value.startswith("error."):
            return f"{option} <the failed ids>"
        return f"{option} {_value(value)}"

    for pattern, command in _CALLS:
        message = re.sub(pattern, command, message)
    message = _ASSIGNMENT.sub(replace, message)
    return _BARE.sub(lambda m: names.get(m.group(1), m.group(1)), message)

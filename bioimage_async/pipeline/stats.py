"""Per-run statistics: what a run did and where its time went."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field

logger = logging.getLogger("bioimage_async")


@dataclass
class RunStats:
    """Filled in place by a run (pass ``stats=RunStats()`` to an op to keep it).

    Seconds are summed over blocks, so with blocks in flight they can exceed ``wall_s``.
    ``extra`` holds what only some runs do: ``raw_copied_blocks`` (blocks copied as encoded
    chunk files, without decoding), ``store_copied_blocks`` (copied chunk to chunk inside
    tensorstore, decoded and re-encoded there), ``read_cache_bytes`` (the input cache of a run whose blocks
    share input chunks through their halos).
    """

    name: str = ""
    blocks_total: int = 0
    blocks_done: int = 0
    blocks_skipped: int = 0
    blocks_failed: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    read_s: float = 0.0
    compute_s: float = 0.0
    write_s: float = 0.0
    wall_s: float = 0.0
    max_in_flight: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def merge(self, other: RunStats) -> None:
        """Add another run's counts and times (a composite op's steps into its total)."""
        for name in (
            "blocks_total",
            "blocks_done",
            "blocks_skipped",
            "blocks_failed",
            "bytes_read",
            "bytes_written",
            "read_s",
            "compute_s",
            "write_s",
            "wall_s",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.max_in_flight = max(self.max_in_flight, other.max_in_flight)
        for key, value in other.extra.items():
            self.extra[key] = self.extra.get(key, 0.0) + value

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def log(self) -> None:
        logger.debug(
            "run %r: %d/%d blocks done (%d skipped, %d failed), %.1f MiB read, %.1f MiB written, "
            "read %.2fs compute %.2fs write %.2fs, wall %.2fs, %d in flight",
            self.name,
            self.blocks_done,
            self.blocks_total,
            self.blocks_skipped,
            self.blocks_failed,
            self.bytes_read / 2**20,
            self.bytes_written / 2**20,
            self.read_s,
            self.compute_s,
            self.write_s,
            self.wall_s,
            self.max_in_flight,
        )

"""In-memory stand-ins shared by the unit tests (pure logic only; the integration tests
use the real Redis)."""

from __future__ import annotations

from chainrule.store.checkpoints import Checkpoint


class MemoryCheckpoints:
    """The Checkpoints protocol over a dict: one checkpoint per job, kept as the bytes
    CheckpointStore would SET (so each one round-trips its encoding)."""

    def __init__(self) -> None:
        self.saved: dict[str, bytes] = {}

    def save(self, job_id: str, checkpoint: Checkpoint, final: bool = False) -> None:
        self.saved[job_id] = checkpoint.to_bytes()  # final or not alike

    def load(self, job_id: str, at_most: int | None = None) -> Checkpoint | None:
        data = self.saved.get(job_id)
        checkpoint = None if data is None else Checkpoint.from_bytes(data)
        if checkpoint is None or at_most is None or checkpoint.version <= at_most:
            return checkpoint
        return None

    def version(self, job_id: str) -> int | None:
        """The version of the job's checkpoint, None without one."""
        checkpoint = self.load(job_id)
        return None if checkpoint is None else checkpoint.version

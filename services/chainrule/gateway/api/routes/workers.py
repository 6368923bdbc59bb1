"""The workers the scheduler knows."""

from __future__ import annotations

from fastapi import APIRouter

from chainrule.gateway.api.deps import WorkerRegistryDep
from chainrule.gateway.schemas import WorkerOut, WorkersPublic

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("")
def list_workers(registry: WorkerRegistryDep) -> WorkersPublic:
    """Every worker with its host, state (idle, busy, lost), current job, last heartbeat
    and tasks done, as the scheduler last wrote them; lost ones stay listed a while."""
    return WorkersPublic(data=[WorkerOut.from_info(info) for info in registry.read()])

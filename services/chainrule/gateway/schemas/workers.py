"""What the worker route sends back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from chainrule.store.workers import WorkerInfo


class WorkerOut(BaseModel):
    id: str
    incarnation: str = Field(
        description="new at every start of the worker process; a restart under the same id "
        "is a new incarnation, and the old one counts as lost"
    )
    host: str
    state: Literal["idle", "busy", "lost"]
    current_job: str | None = Field(description="the job of the task it holds, if any")
    last_heartbeat: datetime
    tasks_done: int = Field(description="tasks it completed since it registered")

    @classmethod
    def from_info(cls, info: WorkerInfo) -> WorkerOut:
        return cls(
            id=info.id,
            incarnation=info.incarnation,
            host=info.host,
            state=info.state,  # type: ignore[arg-type]  # checked against STATES on read
            current_job=info.current_job,
            last_heartbeat=datetime.fromtimestamp(info.last_heartbeat, UTC),
            tasks_done=info.tasks_done,
        )


class WorkersPublic(BaseModel):
    data: list[WorkerOut] = Field(description="by id, as the scheduler last wrote them")

"""Configuration of the gateway, from CHAINRULE_* environment variables."""

from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from chainrule.admission import (
    DEFAULT_MAX_DATASET_MEMORY_MB,
    DEFAULT_MAX_TASK_MEMORY_MB,
    MIB,
    Limits,
)
from chainrule.gateway.principals import TokenTable, parse_api_tokens
from chainrule.settings import ChainruleSettings
from chainrule.store.job_records import OwnerLimits


class GatewaySettings(ChainruleSettings):
    """CHAINRULE_REDIS_URL and CHAINRULE_KEY_PREFIX come from the base, as in every process."""

    gateway_host: str = "127.0.0.1"  # CHAINRULE_GATEWAY_HOST; 0.0.0.0 in a container
    gateway_port: int = Field(default=8000, ge=1, le=65535)  # CHAINRULE_GATEWAY_PORT
    max_upload_bytes: int = Field(  # CHAINRULE_MAX_UPLOAD_BYTES: largest dataset file,
        default=50 * 1024 * 1024,
        ge=1,  # and largest predict request (it carries rows too)
    )
    max_request_bytes: int = Field(  # CHAINRULE_MAX_REQUEST_BYTES: any other request body
        default=1024 * 1024,
        ge=1024,  # (a job spec is a few KB)
    )
    # CHAINRULE_MAX_TASK_MEMORY_MB, CHAINRULE_MAX_DATASET_MEMORY_MB: admission (admission.py)
    # refuses a job whose one task, or whose dataset, needs more memory than this
    max_task_memory_mb: int = Field(default=DEFAULT_MAX_TASK_MEMORY_MB, ge=1)
    max_dataset_memory_mb: int = Field(default=DEFAULT_MAX_DATASET_MEMORY_MB, ge=1)
    # CHAINRULE_STORAGE_REFUSE_AT: new jobs and uploads are refused (507) once Redis uses
    # this share of its maxmemory (gateway/storage.py); no maxmemory: never
    storage_refuse_at: float = Field(default=0.9, gt=0, le=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"  # CHAINRULE_LOG_LEVEL
    # CHAINRULE_API_TOKENS: comma-separated entries, token (admin) or name:token[:admin]
    # (gateway/principals.py); when set, every POST and DELETE under /api/v1 (but predict)
    # needs "Authorization: Bearer <one of them>"
    api_tokens: SecretStr = SecretStr("")
    # CHAINRULE_AUTH_READS: true: reads and predict need one too, and a user reads only
    # its own jobs
    auth_reads: bool = False
    # CHAINRULE_MAX_QUEUED_JOBS_PER_PRINCIPAL, CHAINRULE_MAX_RUNNING_JOBS_PER_PRINCIPAL: a
    # user (not an admin) with this many PENDING, or RUNNING, jobs has a new submission
    # refused with 429; 0: no limit
    max_queued_jobs_per_principal: int = Field(default=0, ge=0)
    max_running_jobs_per_principal: int = Field(default=0, ge=0)
    # CHAINRULE_GATEWAY_TLS_CERT, CHAINRULE_GATEWAY_TLS_KEY: serve HTTPS only, with them
    gateway_tls_cert: Path | None = None
    gateway_tls_key: Path | None = None
    sse_ping_s: float = Field(default=10.0, gt=0, le=300)  # CHAINRULE_SSE_PING_S: keep-alive

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        if (self.gateway_tls_cert is None) != (self.gateway_tls_key is None):
            raise ValueError(
                "HTTPS needs both CHAINRULE_GATEWAY_TLS_CERT and CHAINRULE_GATEWAY_TLS_KEY; "
                f"got cert={self.gateway_tls_cert}, key={self.gateway_tls_key}"
            )
        return self

    @property
    def limits(self) -> Limits:
        return Limits(self.max_task_memory_mb * MIB, self.max_dataset_memory_mb * MIB)

    def token_table(self) -> TokenTable:
        """The accepted bearer tokens and their principals; empty when authentication is
        off. TokenConfigError (naming the entry, not its token) for an unusable entry."""
        return parse_api_tokens(self.api_tokens.get_secret_value())

    @property
    def job_limits(self) -> OwnerLimits:
        return OwnerLimits(
            max_queued=self.max_queued_jobs_per_principal,
            max_running=self.max_running_jobs_per_principal,
        )

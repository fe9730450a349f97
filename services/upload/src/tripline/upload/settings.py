"""Upload service settings."""

from __future__ import annotations

from pydantic import Field, SecretStr

from tripline.common.settings import ServiceSettings


class UploadSettings(ServiceSettings):
    service_name: str = "upload"
    port: int = 8082

    # What may be uploaded, and for how long a presigned POST is valid.
    max_upload_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    presign_expiry_s: int = Field(default=3600, ge=60, le=7 * 24 * 3600)

    # The documents queue as drivers see it: the expected time per document (used until a run
    # has been timed), and the wait past which an upload counts as delayed and its driver is
    # told once.
    document_expected_s: float = Field(default=2.0, gt=0)
    delay_threshold_s: float = Field(default=300.0, gt=0)
    delay_check_interval_s: float = Field(default=30.0, gt=0)
    # How often each replica looks for queued uploads whose work never reached the broker.
    handover_interval_s: float = Field(default=10.0, gt=0)

    # Shared secret of the S3 event-notification endpoint (header X-Tripline-Event-Secret);
    # the endpoint refuses everything while it is unset.
    s3_event_secret: SecretStr | None = None

"""Canary Voice API client for Python.

    from canary import Canary
    canary = Canary("YOUR_API_KEY")
    call = canary.voice.call(to="+15551234567", from_="+15559876543",
                             tts={"text": "Hello from Canary!"}, record=True)
    print(call.id)
"""

from . import webhooks
from ._base import DEFAULT_BASE_URL
from ._client import AsyncCanary, Canary
from ._errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    CanaryError,
    ConflictError,
    InternalServerError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
    WebhookVerificationError,
)
from ._models import (
    Call,
    CallEvent,
    CanaryObject,
    Flow,
    GatherResult,
    PhoneNumber,
    Recording,
    RecordingRef,
    SandboxCallee,
    Transcription,
    Trunk,
    Voice,
    WebhookDelivery,
)
from ._version import __version__
from .pagination import AsyncPage, AsyncPaginator, SyncPage

__all__ = [
    "Canary",
    "AsyncCanary",
    "webhooks",
    "DEFAULT_BASE_URL",
    "__version__",
    "CanaryError",
    "APIError",
    "APIConnectionError",
    "APITimeoutError",
    "InvalidRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "RateLimitError",
    "InternalServerError",
    "ServiceUnavailableError",
    "WebhookVerificationError",
    "CanaryObject",
    "Call",
    "CallEvent",
    "Recording",
    "Transcription",
    "RecordingRef",
    "GatherResult",
    "WebhookDelivery",
    "SandboxCallee",
    "Trunk",
    "Voice",
    "PhoneNumber",
    "Flow",
    "SyncPage",
    "AsyncPage",
    "AsyncPaginator",
]

"""The Voice API resources, in a sync and an async flavour with identical signatures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, Iterator, List, Mapping, Optional, Union

from ._base import NOT_GIVEN, clean_body, resolve_media_url, seg
from ._errors import CanaryError
from ._models import (
    Call,
    CallEvent,
    CanaryObject,
    Flow,
    PhoneNumber,
    Recording,
    SandboxCallee,
    Trunk,
    Voice,
    WebhookDelivery,
)
from .streaming import follow_async, follow_sync
from .pagination import AsyncPage, AsyncPaginator, SyncPage, _items, next_page_params
from .types import (CallStatus, GatherInput, MachineDetection, RecordingAction, RecordingChannels,
                    StatusCallbackEvent, TtsInput)

if TYPE_CHECKING:
    from ._base import AsyncAPIClient, SyncAPIClient

PathLike = Union[str, "os.PathLike[str]"]

# Keyword arguments of calls.create() that are request options, not body fields.
REQUEST_OPTIONS = frozenset({"idempotency_key", "request_timeout", "extra_body"})


def _call_body(
    to: str,
    from_: str,
    tts: Optional[TtsInput],
    audio_url: Optional[str],
    record: Optional[bool],
    transcribe: Optional[bool],
    recording_channels: Optional[RecordingChannels],
    gather: Optional[GatherInput],
    webhook_url: Optional[str],
    timeout: Optional[int],
    flow: Optional[Mapping[str, Any]],
    flow_id: Optional[str],
    extra_body: Optional[Mapping[str, Any]],
    transcribe_webhook_url: Optional[str] = None,
    transcribe_webhooks: Optional[bool] = None,
    transcribe_language: Optional[str] = None,
    stream: Optional[Mapping[str, Any]] = None,
    status_callback_events: Optional[List[StatusCallbackEvent]] = None,
    time_limit: Optional[int] = None,
    dial: Optional[Mapping[str, Any]] = None,
    **detection: Any,
) -> Dict[str, Any]:
    body = clean_body(
        {
            "to": to,
            "from": from_,
            "tts": dict(tts) if tts is not None else None,
            "audio_url": audio_url,
            "record": record,
            "transcribe": transcribe,
            "recording_channels": recording_channels,
            "gather": dict(gather) if gather is not None else None,
            "webhook_url": webhook_url,
            "transcribe_webhook_url": transcribe_webhook_url,
            "transcribe_webhooks": transcribe_webhooks,
            "transcribe_language": transcribe_language,
            "timeout": timeout,
            "flow": dict(flow) if flow is not None else None,
            "flow_id": flow_id,
            "stream": dict(stream) if stream is not None else None,
            "dial": dict(dial) if dial is not None else None,
            **detection,  # machine_detection, machine_detection_timeout, async_amd, amd_webhook_url
            "status_callback_events": list(status_callback_events) if status_callback_events is not None else None,
            "time_limit": time_limit,
        }
    )
    body.update(extra_body or {})
    return body


def _update_body(
    flow: Optional[Mapping[str, Any]],
    flow_id: Optional[str],
    step: Optional[str],
    tts: Optional[TtsInput],
    audio_url: Optional[str],
    interrupt: Optional[bool],
    send_digits: Optional[str],
    recording: Optional[RecordingAction],
    status: Optional[str],
    extra_body: Optional[Mapping[str, Any]],
) -> Dict[str, Any]:
    body = clean_body(
        {
            "flow": dict(flow) if flow is not None else None,
            "flow_id": flow_id,
            "step": step,
            "tts": dict(tts) if tts is not None else None,
            "audio_url": audio_url,
            "interrupt": interrupt,
            "send_digits": send_digits,
            "recording": recording,
            "status": status,
        }
    )
    body.update(extra_body or {})
    return body


def _list_params(
    status: Optional[str],
    to: Optional[str],
    from_: Optional[str],
    created_after: Optional[str],
    created_before: Optional[str],
    limit: Optional[int],
    cursor: Optional[str],
    extra_params: Optional[Mapping[str, Any]],
) -> Dict[str, Any]:
    params = clean_body(
        {
            "status": status,
            "to": to,
            "from": from_,
            "created_after": created_after,
            "created_before": created_before,
            "limit": limit,
            "cursor": cursor,
        }
    )
    params.update(extra_params or {})
    return params


def _recording_url(base_url: str, rec: Any) -> str:
    url = rec.get("url") if isinstance(rec, (dict, CanaryObject)) else None
    if not url:
        raise CanaryError("the recording has no download url yet")
    return resolve_media_url(base_url, str(url))


def _flow_doc(flow: Optional[Mapping[str, Any]], fields: Mapping[str, Any]) -> Dict[str, Any]:
    return {**dict(flow or {}), **fields}


def _simulate_body(flow: Optional[Mapping[str, Any]], flow_id: Optional[str], version: Optional[int],
                   inputs: Optional[List[Mapping[str, str]]], answered_by: Optional[str]) -> Dict[str, Any]:
    body: Dict[str, Any] = {"flow": dict(flow)} if flow is not None else {}
    return {**body, **clean_body({"flow_id": flow_id, "version": version,
                                  "inputs": [dict(i) for i in inputs] if inputs is not None else None,
                                  "answered_by": answered_by})}


def _data(body: Any) -> List[Any]:
    return _items(body)


def _wrap_any(value: Any) -> Any:
    return CanaryObject(value) if isinstance(value, dict) else value


def _write(dest: Optional[PathLike], content: bytes) -> Union[bytes, Path]:
    if dest is None:
        return content
    path = Path(dest)
    path.write_bytes(content)
    return path


# ---------------------------------------------------------------------------------------
# sync


class Calls:
    def __init__(self, client: "SyncAPIClient") -> None:
        self._client = client

    def create(
        self,
        *,
        to: str,
        from_: str,
        tts: Optional[TtsInput] = None,
        audio_url: Optional[str] = None,
        record: Optional[bool] = None,
        transcribe: Optional[bool] = None,
        recording_channels: Optional[RecordingChannels] = None,
        gather: Optional[GatherInput] = None,
        webhook_url: Optional[str] = None,
        transcribe_webhook_url: Optional[str] = None,
        transcribe_webhooks: Optional[bool] = None,
        transcribe_language: Optional[str] = None,
        timeout: Optional[int] = None,
        flow: Optional[Mapping[str, Any]] = None,
        flow_id: Optional[str] = None,
        stream: Optional[Mapping[str, Any]] = None,
        dial: Optional[Mapping[str, Any]] = None,
        machine_detection: Optional[MachineDetection] = None,
        machine_detection_timeout: Optional[int] = None,
        async_amd: Optional[bool] = None,
        amd_webhook_url: Optional[str] = None,
        status_callback_events: Optional[List[StatusCallbackEvent]] = None,
        time_limit: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        request_timeout: Any = NOT_GIVEN,
        extra_body: Optional[Mapping[str, Any]] = None,
    ) -> Call:
        """Place an outbound call. Returns at once (status ``queued``).

        ``machine_detection`` (``"enable"`` | ``"detect_message_end"``) detects who answered: the
        result is the call's ``answered_by`` and a ``machine_detection.completed`` webhook (to
        ``amd_webhook_url``, else ``webhook_url``); with ``async_amd`` the call does not wait for it.

        ``dial`` (``{"to": ..., "caller_id"?, "timeout"?, "record"?}``) is click-to-call: once the
        call is answered and its ``tts``/``audio_url`` played, it is connected to ``dial["to"]``
        (a call of its own, ``parent_call_id`` = this call), and hangs up when that call ends.

        ``timeout`` is the ring timeout in seconds (API field); ``request_timeout`` is the
        HTTP timeout of this request. An ``Idempotency-Key`` is generated when not given
        and reused on every retry, so a retried create never places two calls.
        """
        body = _call_body(
            to, from_, tts, audio_url, record, transcribe, recording_channels, gather,
            webhook_url, timeout, flow, flow_id, extra_body, transcribe_webhook_url, transcribe_webhooks,
            transcribe_language, stream=stream,
            machine_detection=machine_detection, machine_detection_timeout=machine_detection_timeout,
            async_amd=async_amd, amd_webhook_url=amd_webhook_url,
            status_callback_events=status_callback_events, time_limit=time_limit, dial=dial,
        )
        return Call(
            self._client.request(
                "POST", "/v1/voice/calls", json=body, idempotency_key=idempotency_key,
                timeout=request_timeout,
            )
        )

    def get(self, call_id: str, *, request_timeout: Any = NOT_GIVEN) -> Call:
        return Call(self._client.request("GET", f"/v1/voice/calls/{seg(call_id)}", timeout=request_timeout))

    retrieve = get

    def list(
        self,
        *,
        status: Optional[CallStatus] = None,
        to: Optional[str] = None,
        from_: Optional[str] = None,
        created_after: Optional[str] = None,
        created_before: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
        extra_params: Optional[Mapping[str, Any]] = None,
    ) -> SyncPage[Call]:
        """List calls, newest first. Iterate the result to walk every page."""
        params = _list_params(status, to, from_, created_after, created_before, limit, cursor, extra_params)
        fetch = lambda p: self._client.request("GET", "/v1/voice/calls", params=p)  # noqa: E731
        return SyncPage(fetch(params), Call, params, fetch)

    def hangup(self, call_id: str, *, idempotency_key: Optional[str] = None) -> Call:
        """Hang up a live call, or cancel a queued/ringing one."""
        return Call(
            self._client.request(
                "POST", f"/v1/voice/calls/{seg(call_id)}/hangup", idempotency_key=idempotency_key
            )
            or {"id": call_id}
        )

    def update(
        self,
        call_id: str,
        *,
        flow: Optional[Mapping[str, Any]] = None,
        flow_id: Optional[str] = None,
        step: Optional[str] = None,
        tts: Optional[TtsInput] = None,
        audio_url: Optional[str] = None,
        interrupt: Optional[bool] = None,
        send_digits: Optional[str] = None,
        recording: Optional[RecordingAction] = None,
        status: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        extra_body: Optional[Mapping[str, Any]] = None,
    ) -> Call:
        """Change a live call: redirect it (``flow``/``flow_id``, from ``step``), play now
        (``tts``/``audio_url``; ``interrupt=False`` queues after what plays), ``send_digits``,
        ``recording`` (start/pause/resume/stop) or ``status="completed"`` (hang up).

        Returns the call with ``update`` ({id, changes}); ``call.updated`` in its timeline says
        what was applied. A call that ended raises ConflictError (``call_not_live``). An
        ``Idempotency-Key`` is generated when not given, so a retried update is sent once.
        """
        body = _update_body(flow, flow_id, step, tts, audio_url, interrupt, send_digits, recording, status,
                            extra_body)
        return Call(
            self._client.request(
                "POST", f"/v1/voice/calls/{seg(call_id)}", json=body, idempotency_key=idempotency_key
            )
        )

    def events(self, call_id: str) -> List[CallEvent]:
        """The call's event timeline, oldest first (every page)."""
        path = f"/v1/voice/calls/{seg(call_id)}/events"
        params: Optional[Dict[str, Any]] = {}
        out: List[CallEvent] = []
        while params is not None:
            body = self._client.request("GET", path, params=params)
            items = _items(body)
            out.extend(CallEvent(x) for x in items)
            params = next_page_params(body, params) if items else None
        return out

    def follow(self, call_id: str, *, last_event_id: Optional[str] = None) -> Iterator[CallEvent]:
        """The call's events as they happen (Server-Sent Events): its timeline so far (after
        ``last_event_id``), then each new event; ends once the call ended and its recording
        and transcript are in. Reconnects by itself and never repeats or skips an event."""
        return follow_sync(self._client, f"/v1/voice/calls/{seg(call_id)}/events", last_event_id)

    def webhook_deliveries(self, call_id: str) -> List[WebhookDelivery]:
        """The call's webhook deliveries, with every attempt."""
        body = self._client.request("GET", f"/v1/voice/calls/{seg(call_id)}/webhooks")
        return [WebhookDelivery(x) for x in _data(body)]

    def recording(self, call_id: str) -> Recording:
        """The call's recording (raises NotFoundError until it exists)."""
        return Recording(self._client.request("GET", f"/v1/voice/calls/{seg(call_id)}/recording"))

    def download_recording(
        self, call_id_or_recording: Union[str, Recording], dest: Optional[PathLike] = None
    ) -> Union[bytes, Path]:
        """Download the recording's audio: the bytes, or the Path written when ``dest`` is given."""
        rec = (
            self.recording(call_id_or_recording)
            if isinstance(call_id_or_recording, str)
            else call_id_or_recording
        )
        url = _recording_url(self._client.base_url, rec)
        response = self._client._send("GET", url, headers={"Accept": "*/*"})
        return _write(dest, response.content)


class Voices:
    def __init__(self, client: "SyncAPIClient") -> None:
        self._client = client

    def list(self, **params: Any) -> SyncPage[Voice]:
        fetch = lambda p: self._client.request("GET", "/v1/voice/voices", params=p)  # noqa: E731
        return SyncPage(fetch(params), Voice, dict(params), fetch)


class Numbers:
    def __init__(self, client: "SyncAPIClient") -> None:
        self._client = client

    def list(self, **params: Any) -> SyncPage[PhoneNumber]:
        fetch = lambda p: self._client.request("GET", "/v1/voice/numbers", params=p)  # noqa: E731
        return SyncPage(fetch(params), PhoneNumber, dict(params), fetch)

    def create(self, number: str, *, idempotency_key: Optional[str] = None, **fields: Any) -> PhoneNumber:
        """Add a caller ID (E.164): verified at once with a test key; a live key gets a verification call."""
        body = {"number": number, **fields}
        return PhoneNumber(
            self._client.request("POST", "/v1/voice/numbers", json=body, idempotency_key=idempotency_key)
        )

    add = create

    def verify(self, number: str, code: str) -> PhoneNumber:
        """Verify a live key's caller ID with the code its verification call spoke."""
        return PhoneNumber(self._client.request("POST", f"/v1/voice/numbers/{seg(number)}/verify",
                                                json={"code": code}))

    def update(self, number: str, **route: Any) -> PhoneNumber:
        """How the number answers incoming calls: ``voice_url=`` (its app returns the steps) or
        ``flow_id=``, and ``webhook_url=`` for status webhooks; ``None`` clears one."""
        return PhoneNumber(self._client.request("PATCH", f"/v1/voice/numbers/{seg(number)}", json=route))

    def delete(self, number: str) -> None:
        self._client.request("DELETE", f"/v1/voice/numbers/{seg(number)}")


class Flows:
    """IVR flows (versioned documents; see the IVR docs for the format)."""

    def __init__(self, client: "SyncAPIClient") -> None:
        self._client = client

    def create(
        self, flow: Optional[Mapping[str, Any]] = None, *, idempotency_key: Optional[str] = None, **fields: Any
    ) -> Flow:
        """Store a new flow (version 1). Pass the document as a dict and/or keywords."""
        return Flow(self._client.request(
            "POST", "/v1/voice/flows", json=_flow_doc(flow, fields), idempotency_key=idempotency_key))

    def get(self, flow_id: str, *, version: Optional[int] = None) -> Flow:
        """The latest version of a flow, or ``version=N``."""
        return Flow(self._client.request("GET", f"/v1/voice/flows/{seg(flow_id)}", params={"version": version}))

    retrieve = get

    def list(self, *, limit: Optional[int] = None, **params: Any) -> SyncPage[Flow]:
        """The latest version of every flow."""
        query = clean_body({"limit": limit, **params})
        fetch = lambda p: self._client.request("GET", "/v1/voice/flows", params=p)  # noqa: E731
        return SyncPage(fetch(query), Flow, query, fetch)

    def update(self, flow_id: str, flow: Optional[Mapping[str, Any]] = None, **fields: Any) -> Flow:
        """Save a new version of a flow."""
        return Flow(self._client.request("PUT", f"/v1/voice/flows/{seg(flow_id)}", json=_flow_doc(flow, fields)))

    def versions(self, flow_id: str) -> List[Any]:
        """The flow's versions."""
        return [_wrap_any(x) for x in _data(self._client.request("GET", f"/v1/voice/flows/{seg(flow_id)}/versions"))]

    def delete(self, flow_id: str) -> None:
        self._client.request("DELETE", f"/v1/voice/flows/{seg(flow_id)}")

    def validate(self, flow: Optional[Mapping[str, Any]] = None, **fields: Any) -> Any:
        """Check a flow without storing it: ``.valid`` and ``.errors`` (each naming its step)."""
        return _wrap_any(self._client.request("POST", "/v1/voice/flows/validate", json=_flow_doc(flow, fields)))

    def simulate(self, flow: Optional[Mapping[str, Any]] = None, *, flow_id: Optional[str] = None,
                 version: Optional[int] = None, inputs: Optional[List[Mapping[str, str]]] = None,
                 answered_by: Optional[str] = None) -> Any:
        """Walk an inline ``flow`` or a stored ``flow_id`` with scripted input
        (``[{"press": "2"}, {"say": "billing"}]``): the path a caller would take. No call is placed."""
        return _wrap_any(self._client.request("POST", "/v1/voice/flows/simulate", json=_simulate_body(
            flow, flow_id, version, inputs, answered_by)))


class Keys:
    """The account's API keys: listed by prefix, created (the key is shown once), revoked."""

    def __init__(self, client: "SyncAPIClient") -> None:
        self._client = client

    def list(self) -> List[Any]:
        return [_wrap_any(x) for x in _data(self._client.request("GET", "/v1/voice/keys"))]

    def create(self, *, mode: Optional[str] = None) -> Any:
        """A new key (``.key`` is in this response only)."""
        return _wrap_any(self._client.request("POST", "/v1/voice/keys", json=clean_body({"mode": mode})))

    def revoke(self, key_id: str) -> None:
        self._client.request("DELETE", f"/v1/voice/keys/{seg(key_id)}")


class SandboxCallees:
    """Scripted callees of sandbox numbers (``sk_test_`` keys): who answers, what they press or say."""

    def __init__(self, client: "SyncAPIClient") -> None:
        self._client = client

    def list(self) -> SyncPage[SandboxCallee]:
        fetch = lambda p: self._client.request("GET", "/v1/voice/sandbox/callees", params=p)  # noqa: E731
        return SyncPage(fetch({}), SandboxCallee, {}, fetch)

    def create(self, number: str, *, idempotency_key: Optional[str] = None, **script: Any) -> SandboxCallee:
        """Attach a scripted callee, e.g. ``create("+15551234567", answer=True, press="1")``."""
        return SandboxCallee(self._client.request(
            "POST", "/v1/voice/sandbox/callees", json={"number": number, **script},
            idempotency_key=idempotency_key))

    def delete(self, number: str) -> None:
        self._client.request("DELETE", f"/v1/voice/sandbox/callees/{seg(number)}")


class Sandbox:
    def __init__(self, client: "SyncAPIClient") -> None:
        self._client = client
        self.callees = SandboxCallees(client)

    def call_in(self, to: str, from_: str, **script: Any) -> Call:
        """A sandbox caller dials one of your numbers, e.g. ``call_in("+15559876543", "+15551230001", press="1")``."""
        return Call(self._client.request("POST", "/v1/voice/sandbox/calls-in", json={"to": to, "from": from_,
                                                                                     **script}))


class TrunkResource:
    """The account's SIP trunk (used by ``sk_live_`` keys)."""

    def __init__(self, client: "SyncAPIClient") -> None:
        self._client = client

    def get(self) -> Trunk:
        return Trunk(self._client.request("GET", "/v1/voice/trunk"))

    def update(self, *, host: str, **fields: Any) -> Trunk:
        """Create or replace the trunk (``host`` required; ``port``, ``transport``, ``srtp``, ``password``, ...).
        Without ``port`` (or with ``port=None``) the trunk's servers are located by DNS at each call
        (NAPTR, SRV, then the host's address: RFC 3263)."""
        return Trunk(self._client.request("PUT", "/v1/voice/trunk", json={"host": host, **fields}))

    def delete(self) -> None:
        self._client.request("DELETE", "/v1/voice/trunk")


class Events:
    """The account's events, live."""

    def __init__(self, client: "SyncAPIClient") -> None:
        self._client = client

    def follow(self, *, last_event_id: Optional[str] = None) -> Iterator[CallEvent]:
        """Every event of every call of the account as it happens (never ends by itself;
        ``ev.call_id`` says whose). Resumes after ``last_event_id`` from the server's recent window."""
        return follow_sync(self._client, "/v1/voice/events", last_event_id)


class AsyncEvents:
    """The account's events, live (async)."""

    def __init__(self, client: "AsyncAPIClient") -> None:
        self._client = client

    def follow(self, *, last_event_id: Optional[str] = None) -> AsyncIterator[CallEvent]:
        """``async for ev in client.voice.events.follow()``: every event of the account, live."""
        return follow_async(self._client, "/v1/voice/events", last_event_id)


class VoiceResource:
    """``canary.voice``: ``call(...)`` places a call; ``calls``, ``voices``, ``numbers``,
    ``flows`` cover the rest of the Voice API."""

    def __init__(self, client: "SyncAPIClient") -> None:
        self.calls = Calls(client)
        self.voices = Voices(client)
        self.numbers = Numbers(client)
        self.flows = Flows(client)
        self.keys = Keys(client)
        self.sandbox = Sandbox(client)
        self.trunk = TrunkResource(client)
        self.events = Events(client)
        self.call = self.calls.create


# ---------------------------------------------------------------------------------------
# async


class AsyncCalls:
    def __init__(self, client: "AsyncAPIClient") -> None:
        self._client = client

    async def create(
        self,
        *,
        to: str,
        from_: str,
        tts: Optional[TtsInput] = None,
        audio_url: Optional[str] = None,
        record: Optional[bool] = None,
        transcribe: Optional[bool] = None,
        recording_channels: Optional[RecordingChannels] = None,
        gather: Optional[GatherInput] = None,
        webhook_url: Optional[str] = None,
        transcribe_webhook_url: Optional[str] = None,
        transcribe_webhooks: Optional[bool] = None,
        transcribe_language: Optional[str] = None,
        timeout: Optional[int] = None,
        flow: Optional[Mapping[str, Any]] = None,
        flow_id: Optional[str] = None,
        stream: Optional[Mapping[str, Any]] = None,
        dial: Optional[Mapping[str, Any]] = None,
        machine_detection: Optional[MachineDetection] = None,
        machine_detection_timeout: Optional[int] = None,
        async_amd: Optional[bool] = None,
        amd_webhook_url: Optional[str] = None,
        status_callback_events: Optional[List[StatusCallbackEvent]] = None,
        time_limit: Optional[int] = None,
        idempotency_key: Optional[str] = None,
        request_timeout: Any = NOT_GIVEN,
        extra_body: Optional[Mapping[str, Any]] = None,
    ) -> Call:
        """Place an outbound call (see :meth:`Calls.create`)."""
        body = _call_body(
            to, from_, tts, audio_url, record, transcribe, recording_channels, gather,
            webhook_url, timeout, flow, flow_id, extra_body, transcribe_webhook_url, transcribe_webhooks,
            transcribe_language, stream=stream,
            machine_detection=machine_detection, machine_detection_timeout=machine_detection_timeout,
            async_amd=async_amd, amd_webhook_url=amd_webhook_url,
            status_callback_events=status_callback_events, time_limit=time_limit, dial=dial,
        )
        return Call(
            await self._client.request(
                "POST", "/v1/voice/calls", json=body, idempotency_key=idempotency_key,
                timeout=request_timeout,
            )
        )

    async def get(self, call_id: str, *, request_timeout: Any = NOT_GIVEN) -> Call:
        return Call(
            await self._client.request("GET", f"/v1/voice/calls/{seg(call_id)}", timeout=request_timeout)
        )

    retrieve = get

    def list(
        self,
        *,
        status: Optional[CallStatus] = None,
        to: Optional[str] = None,
        from_: Optional[str] = None,
        created_after: Optional[str] = None,
        created_before: Optional[str] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
        extra_params: Optional[Mapping[str, Any]] = None,
    ) -> AsyncPaginator[Call]:
        """``await`` for the first page, or ``async for call in ...list()`` for every call."""
        params = _list_params(status, to, from_, created_after, created_before, limit, cursor, extra_params)
        return AsyncPaginator(
            Call, params, lambda p: self._client.request("GET", "/v1/voice/calls", params=p)
        )

    async def hangup(self, call_id: str, *, idempotency_key: Optional[str] = None) -> Call:
        return Call(
            await self._client.request(
                "POST", f"/v1/voice/calls/{seg(call_id)}/hangup", idempotency_key=idempotency_key
            )
            or {"id": call_id}
        )

    async def update(
        self,
        call_id: str,
        *,
        flow: Optional[Mapping[str, Any]] = None,
        flow_id: Optional[str] = None,
        step: Optional[str] = None,
        tts: Optional[TtsInput] = None,
        audio_url: Optional[str] = None,
        interrupt: Optional[bool] = None,
        send_digits: Optional[str] = None,
        recording: Optional[RecordingAction] = None,
        status: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        extra_body: Optional[Mapping[str, Any]] = None,
    ) -> Call:
        """Change a live call (see the sync ``Calls.update``)."""
        body = _update_body(flow, flow_id, step, tts, audio_url, interrupt, send_digits, recording, status,
                            extra_body)
        return Call(
            await self._client.request(
                "POST", f"/v1/voice/calls/{seg(call_id)}", json=body, idempotency_key=idempotency_key
            )
        )

    async def events(self, call_id: str) -> List[CallEvent]:
        path = f"/v1/voice/calls/{seg(call_id)}/events"
        params: Optional[Dict[str, Any]] = {}
        out: List[CallEvent] = []
        while params is not None:
            body = await self._client.request("GET", path, params=params)
            items = _items(body)
            out.extend(CallEvent(x) for x in items)
            params = next_page_params(body, params) if items else None
        return out

    def follow(self, call_id: str, *, last_event_id: Optional[str] = None) -> AsyncIterator[CallEvent]:
        """The call's events as they happen: ``async for ev in client.voice.calls.follow(id)``
        (the timeline so far after ``last_event_id``, then live; ends when the call is over)."""
        return follow_async(self._client, f"/v1/voice/calls/{seg(call_id)}/events", last_event_id)

    async def webhook_deliveries(self, call_id: str) -> List[WebhookDelivery]:
        """The call's webhook deliveries, with every attempt."""
        body = await self._client.request("GET", f"/v1/voice/calls/{seg(call_id)}/webhooks")
        return [WebhookDelivery(x) for x in _data(body)]

    async def recording(self, call_id: str) -> Recording:
        return Recording(await self._client.request("GET", f"/v1/voice/calls/{seg(call_id)}/recording"))

    async def download_recording(
        self, call_id_or_recording: Union[str, Recording], dest: Optional[PathLike] = None
    ) -> Union[bytes, Path]:
        rec = (
            await self.recording(call_id_or_recording)
            if isinstance(call_id_or_recording, str)
            else call_id_or_recording
        )
        url = _recording_url(self._client.base_url, rec)
        response = await self._client._send("GET", url, headers={"Accept": "*/*"})
        return _write(dest, response.content)


class AsyncVoices:
    def __init__(self, client: "AsyncAPIClient") -> None:
        self._client = client

    def list(self, **params: Any) -> AsyncPaginator[Voice]:
        return AsyncPaginator(Voice, dict(params), lambda p: self._client.request("GET", "/v1/voice/voices", params=p))


class AsyncNumbers:
    def __init__(self, client: "AsyncAPIClient") -> None:
        self._client = client

    def list(self, **params: Any) -> AsyncPaginator[PhoneNumber]:
        return AsyncPaginator(
            PhoneNumber, dict(params), lambda p: self._client.request("GET", "/v1/voice/numbers", params=p)
        )

    async def create(self, number: str, *, idempotency_key: Optional[str] = None, **fields: Any) -> PhoneNumber:
        body = {"number": number, **fields}
        return PhoneNumber(
            await self._client.request("POST", "/v1/voice/numbers", json=body, idempotency_key=idempotency_key)
        )

    add = create

    async def verify(self, number: str, code: str) -> PhoneNumber:
        return PhoneNumber(await self._client.request("POST", f"/v1/voice/numbers/{seg(number)}/verify",
                                                      json={"code": code}))

    async def update(self, number: str, **route: Any) -> PhoneNumber:
        return PhoneNumber(await self._client.request("PATCH", f"/v1/voice/numbers/{seg(number)}", json=route))

    async def delete(self, number: str) -> None:
        await self._client.request("DELETE", f"/v1/voice/numbers/{seg(number)}")


class AsyncFlows:
    def __init__(self, client: "AsyncAPIClient") -> None:
        self._client = client

    async def create(
        self, flow: Optional[Mapping[str, Any]] = None, *, idempotency_key: Optional[str] = None, **fields: Any
    ) -> Flow:
        return Flow(await self._client.request(
            "POST", "/v1/voice/flows", json=_flow_doc(flow, fields), idempotency_key=idempotency_key))

    async def get(self, flow_id: str, *, version: Optional[int] = None) -> Flow:
        return Flow(await self._client.request(
            "GET", f"/v1/voice/flows/{seg(flow_id)}", params={"version": version}))

    retrieve = get

    def list(self, *, limit: Optional[int] = None, **params: Any) -> AsyncPaginator[Flow]:
        query = clean_body({"limit": limit, **params})
        return AsyncPaginator(Flow, query, lambda p: self._client.request("GET", "/v1/voice/flows", params=p))

    async def update(self, flow_id: str, flow: Optional[Mapping[str, Any]] = None, **fields: Any) -> Flow:
        return Flow(await self._client.request(
            "PUT", f"/v1/voice/flows/{seg(flow_id)}", json=_flow_doc(flow, fields)))

    async def versions(self, flow_id: str) -> List[Any]:
        body = await self._client.request("GET", f"/v1/voice/flows/{seg(flow_id)}/versions")
        return [_wrap_any(x) for x in _data(body)]

    async def delete(self, flow_id: str) -> None:
        await self._client.request("DELETE", f"/v1/voice/flows/{seg(flow_id)}")

    async def validate(self, flow: Optional[Mapping[str, Any]] = None, **fields: Any) -> Any:
        return _wrap_any(await self._client.request("POST", "/v1/voice/flows/validate",
                                                    json=_flow_doc(flow, fields)))

    async def simulate(self, flow: Optional[Mapping[str, Any]] = None, *, flow_id: Optional[str] = None,
                       version: Optional[int] = None, inputs: Optional[List[Mapping[str, str]]] = None,
                       answered_by: Optional[str] = None) -> Any:
        return _wrap_any(await self._client.request("POST", "/v1/voice/flows/simulate", json=_simulate_body(
            flow, flow_id, version, inputs, answered_by)))


class AsyncKeys:
    def __init__(self, client: "AsyncAPIClient") -> None:
        self._client = client

    async def list(self) -> List[Any]:
        return [_wrap_any(x) for x in _data(await self._client.request("GET", "/v1/voice/keys"))]

    async def create(self, *, mode: Optional[str] = None) -> Any:
        return _wrap_any(await self._client.request("POST", "/v1/voice/keys", json=clean_body({"mode": mode})))

    async def revoke(self, key_id: str) -> None:
        await self._client.request("DELETE", f"/v1/voice/keys/{seg(key_id)}")


class AsyncSandboxCallees:
    def __init__(self, client: "AsyncAPIClient") -> None:
        self._client = client

    def list(self) -> AsyncPaginator[SandboxCallee]:
        return AsyncPaginator(
            SandboxCallee, {}, lambda p: self._client.request("GET", "/v1/voice/sandbox/callees", params=p))

    async def create(self, number: str, *, idempotency_key: Optional[str] = None, **script: Any) -> SandboxCallee:
        return SandboxCallee(await self._client.request(
            "POST", "/v1/voice/sandbox/callees", json={"number": number, **script},
            idempotency_key=idempotency_key))

    async def delete(self, number: str) -> None:
        await self._client.request("DELETE", f"/v1/voice/sandbox/callees/{seg(number)}")


class AsyncSandbox:
    def __init__(self, client: "AsyncAPIClient") -> None:
        self._client = client
        self.callees = AsyncSandboxCallees(client)

    async def call_in(self, to: str, from_: str, **script: Any) -> Call:
        return Call(await self._client.request("POST", "/v1/voice/sandbox/calls-in",
                                               json={"to": to, "from": from_, **script}))


class AsyncTrunkResource:
    def __init__(self, client: "AsyncAPIClient") -> None:
        self._client = client

    async def get(self) -> Trunk:
        return Trunk(await self._client.request("GET", "/v1/voice/trunk"))

    async def update(self, *, host: str, **fields: Any) -> Trunk:
        return Trunk(await self._client.request("PUT", "/v1/voice/trunk", json={"host": host, **fields}))

    async def delete(self) -> None:
        await self._client.request("DELETE", "/v1/voice/trunk")


class AsyncVoiceResource:
    def __init__(self, client: "AsyncAPIClient") -> None:
        self.calls = AsyncCalls(client)
        self.voices = AsyncVoices(client)
        self.numbers = AsyncNumbers(client)
        self.flows = AsyncFlows(client)
        self.keys = AsyncKeys(client)
        self.sandbox = AsyncSandbox(client)
        self.trunk = AsyncTrunkResource(client)
        self.events = AsyncEvents(client)
        self.call = self.calls.create


__all__ = [
    "Calls", "Voices", "Numbers", "Flows", "Sandbox", "SandboxCallees", "TrunkResource", "VoiceResource", "Events",
    "AsyncCalls", "AsyncVoices", "AsyncNumbers", "AsyncFlows", "AsyncSandbox", "AsyncSandboxCallees",
    "AsyncTrunkResource", "AsyncVoiceResource", "AsyncEvents",
    "AsyncPage", "REQUEST_OPTIONS",
]

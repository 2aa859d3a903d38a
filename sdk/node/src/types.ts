/** Request and response shapes of the Canary Voice API (JSON field names, as on the wire). */

export type CallStatus =
  | 'queued'
  | 'ringing'
  | 'in-progress'
  | 'completed'
  | 'busy'
  | 'no-answer'
  | 'failed'
  | 'canceled';

export type RecordingChannels = 'mono' | 'dual';
export type GatherType = 'dtmf' | 'speech' | 'dtmf speech';

export interface TtsParams {
  /** Text or SSML to speak. */
  text: string;
  /** Voice id, e.g. `en-US-Neural2-F` (see `voice.voices.list()`). */
  voice?: string;
  speed?: number;
  /** Semitones. */
  pitch?: number;
}

export interface GatherParams {
  type?: GatherType;
  num_digits?: number;
  finish_on_key?: string;
  /** Seconds to wait for the first input. */
  timeout?: number;
  webhook_url?: string;
  inter_digit_timeout?: number;
  barge_in?: boolean;
  language?: string;
  hints?: string[];
}

/** A media stream to your WebSocket app, in Twilio Media Streams' protocol (docs/media-streams.md). */
export interface StreamParams {
  /** `wss://` URL of your app (`ws://` only against a development server). */
  url: string;
  /** What your app hears: the callee (`inbound`, default), what the call plays (`outbound`), or both. */
  track?: 'inbound' | 'outbound' | 'both';
  /** Your app's media/mark/clear are played into the call; the call lasts as long as the stream. */
  bidirectional?: boolean;
  /** Sent to your app in `start.customParameters`. */
  parameters?: Record<string, string>;
}

/** Click-to-call: once the call is answered (and its tts / audio_url played), connect it to a second party. */
export interface DialParams {
  /** The number (E.164) or SIP URI (`sip:user@host`) to connect to. */
  to: string;
  /** What the second party sees: a verified number of your account (default: the call's `from`). */
  caller_id?: string;
  /** Seconds the second party may ring, 1-600 (default 30). */
  timeout?: number;
  /** Record the conversation, dual-channel, from the connect. */
  record?: boolean;
}

/** Body of `POST /v1/voice/calls`. Either `tts` or `audio_url` is required (or a flow, `dial`, or a bidirectional `stream`). */
export interface CallCreateParams {
  /** Recipient, E.164. */
  to: string;
  /** Caller ID: a verified number of your account. */
  from: string;
  tts?: TtsParams;
  /** URL of an audio file to play (MP3, WAV). */
  audio_url?: string;
  record?: boolean;
  transcribe?: boolean;
  recording_channels?: RecordingChannels;
  gather?: GatherParams;
  /** URL for call status webhooks. */
  webhook_url?: string;
  /** Live transcripts (transcription.partial, .completed) as webhooks to this URL; needs `transcribe`. */
  transcribe_webhook_url?: string;
  /** Live transcripts as webhooks to `webhook_url`; needs `transcribe`. */
  transcribe_webhooks?: boolean;
  /** Language of the call's speech for transcription: a BCP-47 tag (`es`, `pt-BR`) or `auto`; default English. */
  transcribe_language?: string;
  /** Ring timeout in seconds (default 30). */
  timeout?: number;
  /** An inline IVR flow. */
  flow?: Record<string, unknown>;
  /** A saved IVR flow. */
  flow_id?: string;
  /** A media stream for the whole call, from answer. */
  stream?: StreamParams;
  /** Click-to-call: the second party this call is connected to once answered (a call of its own, `parent_call_id` = this call); not with a flow. */
  dial?: DialParams;
  /** Answering machine detection: who answered (the call's answered_by). */
  machine_detection?: 'enable' | 'detect_message_end';
  /** Seconds to decide in, 3-60 (default 30); then answered_by is unknown. */
  machine_detection_timeout?: number;
  /** true: the prompt/flow does not wait for the result (default false). */
  async_amd?: boolean;
  /** Where the machine_detection.completed webhook goes (default: webhook_url). */
  amd_webhook_url?: string;
  /** Which status webhooks to send (default: all); `answered` is `in-progress`. */
  status_callback_events?: StatusCallbackEvent[];
  /** Maximum seconds once answered (default and maximum 14400); ends `completed`, end_reason `time_limit`. */
  time_limit?: number;
}

export type StatusCallbackEvent =
  | 'queued' | 'ringing' | 'in-progress' | 'answered' | 'completed' | 'busy' | 'no-answer' | 'failed' | 'canceled';

export type RecordingAction = 'start' | 'pause' | 'resume' | 'stop';

/**
 * Body of `POST /v1/voice/calls/{id}`: at least one change. A redirect (`flow`/`flow_id`) and a
 * play (`tts`/`audio_url`) exclude each other; `status` goes alone.
 */
export interface CallUpdateParams {
  /** Redirect to this inline IVR flow. */
  flow?: Record<string, unknown>;
  /** Redirect to this stored IVR flow. */
  flow_id?: string;
  /** With flow/flow_id: the step to enter (default: the flow's start). */
  step?: string;
  /** Play this text now. */
  tts?: TtsParams;
  /** Play this audio file now. */
  audio_url?: string;
  /** With tts/audio_url: stop what plays and the running gather/script/flow step (default true), or queue after it. */
  interrupt?: boolean;
  /** DTMF to send to the far end (`0-9*#A-D`, `w` pauses half a second). */
  send_digits?: string;
  recording?: RecordingAction;
  /** `completed`: hang up. */
  status?: 'completed';
}

/** What `calls.update()` sent: the UpdateCall id (call.updated's update_id) and its changes. */
export interface CallUpdateRef {
  id: string | null;
  changes: string[];
}

export interface CallListParams {
  status?: CallStatus;
  to?: string;
  from?: string;
  created_after?: string;
  created_before?: string;
  limit?: number;
  cursor?: string;
  [filter: string]: string | number | boolean | undefined;
}

export interface Transcription {
  text: string;
  confidence: number;
  [key: string]: unknown;
}

export interface Recording {
  id: string;
  call_id: string;
  /** Seconds. */
  duration: number;
  /** Signed, expiring download URL. */
  url: string;
  transcription?: Transcription | null;
  /** Where the recording was paused: silence in the file, in ms from its start. */
  paused_spans?: { start_ms: number; end_ms: number }[];
  [key: string]: unknown;
}

/** The recording summary embedded in a call. */
export interface RecordingRef {
  id: string;
  duration: number;
  url: string;
  [key: string]: unknown;
}

export interface GatherResult {
  status: 'completed' | 'timeout' | string;
  digits?: string;
  finished_on_key?: string | null;
  speech?: Record<string, unknown> | null;
  [key: string]: unknown;
}

export interface Call {
  id: string;
  to: string | null;
  from: string | null;
  status: CallStatus;
  direction: 'outbound' | 'inbound' | 'outbound-dial';
  created_at: string;
  updated_at?: string;
  answered_at?: string | null;
  ended_at?: string | null;
  /** Seconds from answer to end. */
  duration?: number | null;
  answered_by?: string | null;
  /** Always null: this service does not bill. */
  price?: null;
  end_reason?: string | null;
  /** Who ended the call: caller (this side), callee (the far end), system. */
  hangup_by?: 'caller' | 'callee' | 'system' | null;
  sip_code?: number | null;
  recording?: RecordingRef | null;
  transcription?: Transcription | null;
  gather?: GatherResult | null;
  /** The call whose flow `dial` step placed this one (direction `outbound-dial`). */
  parent_call_id?: string | null;
  /** In the answer of `calls.update()`. */
  update?: CallUpdateRef;
  [key: string]: unknown;
}

export interface CallEvent {
  id: string;
  type: string;
  version: number;
  occurred_at: string;
  /**
   * The W3C trace id the event was emitted in: the call's trace, as in the `traceparent`
   * header the call's creation answered with (absent from a server that does not send it).
   */
  trace_id?: string;
  /** The call it belongs to (always on a followed stream). */
  call_id?: string;
  data: Record<string, unknown>;
  [key: string]: unknown;
}

export interface Voice {
  id: string;
  language: string;
  language_name: string;
  gender: string;
  type: string;
  engine: string;
  note?: string;
  [key: string]: unknown;
}

export interface PhoneNumber {
  number: string;
  created_at: string;
  /** `verified`, or `pending`: a sk_live_ key's number awaiting its verification call's code */
  verification: 'pending' | 'verified';
  /** incoming calls: the app asked for the call's steps, or the stored flow run */
  voice_url?: string | null;
  flow_id?: string | null;
  webhook_url?: string | null;
  [key: string]: unknown;
}

export interface Flow {
  id: string;
  name?: string | null;
  version?: number;
  [key: string]: unknown;
}

/** One webhook delivery of a call, with its attempts. */
export interface WebhookDelivery {
  [key: string]: unknown;
}

export type Duration = number | string;

export interface SandboxCalleeParams {
  /** Sandbox number (E.164). */
  number: string;
  answer?: boolean;
  ring?: Duration;
  after?: Duration;
  hangup_after?: Duration | null;
  press?: string;
  say?: string;
  say_voice?: string;
  /** A voicemail: its greeting on answer, then it listens. */
  voicemail?: string;
  /** The voicemail beeps after its greeting. */
  beep?: boolean;
}

export interface SandboxCallee {
  number: string;
  [key: string]: unknown;
}

export interface TrunkParams {
  host: string;
  /** Absent or null: the trunk's servers are located by DNS at each call (NAPTR, SRV, A: RFC 3263). */
  port?: number | null;
  transport?: 'udp' | 'tcp' | 'tls';
  username?: string | null;
  /** Write-only. Absent: keep the stored one; null: remove. */
  password?: string | null;
  caller_id?: string | null;
  allowed_from_prefixes?: string[];
  /** The only digest realm whose challenges are answered; null: the trunk's own first one. */
  digest_realm?: string | null;
  /** Answer digest challenges without qop (RFC 2069). Default false. */
  allow_legacy_digest?: boolean;
  /** Follow a Record-Route or Contact off the trunk's addresses. Default false. */
  allow_foreign_hops?: boolean;
  /** SRTP with SDES keys: 'off' (default), 'optional' or 'required'; needs transport 'tls'. */
  srtp?: 'off' | 'optional' | 'required';
}

export interface Trunk {
  host: string;
  /** null: located by DNS at each call. */
  port?: number | null;
  transport?: string;
  username?: string | null;
  caller_id?: string | null;
  allowed_from_prefixes?: string[];
  digest_realm?: string | null;
  allow_legacy_digest?: boolean;
  allow_foreign_hops?: boolean;
  srtp?: 'off' | 'optional' | 'required';
  [key: string]: unknown;
}

/** Per-request options (the last argument of every method). */
export interface RequestOptions {
  /** Sent as `Idempotency-Key` on POSTs; one is generated when omitted (and reused on retries). */
  idempotencyKey?: string;
  /** Milliseconds; overrides the client's `timeout` for this request. */
  timeout?: number;
  /** Overrides the client's `maxRetries` for this request. */
  maxRetries?: number;
  signal?: AbortSignal;
  headers?: Record<string, string>;
  /** Extra JSON fields merged into the request body. */
  extraBody?: Record<string, unknown>;
}

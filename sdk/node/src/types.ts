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

/** Body of `POST /v1/voice/calls`. Either `tts` or `audio_url` is required. */
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
  /** Ring timeout in seconds (default 30). */
  timeout?: number;
  /** An inline IVR flow. */
  flow?: Record<string, unknown>;
  /** A saved IVR flow. */
  flow_id?: string;
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
  text?: string | null;
  confidence?: number | null;
  [key: string]: unknown;
}

export interface Recording {
  id: string;
  call_id: string;
  duration?: number | null;
  url?: string | null;
  transcription?: Transcription | null;
  [key: string]: unknown;
}

export interface GatherResult {
  digits?: string | null;
  speech?: string | null;
  finished_on_key?: string | null;
  confidence?: number | null;
  [key: string]: unknown;
}

export interface Call {
  id: string;
  to: string;
  from: string;
  status: CallStatus | string;
  direction: 'outbound' | 'inbound' | string;
  created_at: string;
  updated_at?: string | null;
  answered_at?: string | null;
  ended_at?: string | null;
  duration?: number | null;
  answered_by?: string | null;
  tts?: TtsParams | null;
  audio_url?: string | null;
  record?: boolean | null;
  transcribe?: boolean | null;
  recording_channels?: RecordingChannels | null;
  gather?: GatherParams | null;
  webhook_url?: string | null;
  timeout?: number | null;
  flow?: Record<string, unknown> | null;
  flow_id?: string | null;
  recording?: Recording | null;
  transcription?: Transcription | null;
  gather_result?: GatherResult | null;
  error?: Record<string, unknown> | null;
  [key: string]: unknown;
}

export interface CallEvent {
  id: string;
  type: string;
  call_id: string;
  occurred_at: string;
  data?: Record<string, unknown> | null;
  [key: string]: unknown;
}

export interface Voice {
  id: string;
  language?: string | null;
  gender?: string | null;
  type?: string | null;
  name?: string | null;
  [key: string]: unknown;
}

export interface PhoneNumber {
  number: string;
  id?: string | null;
  created_at?: string | null;
  [key: string]: unknown;
}

export interface Flow {
  id: string;
  name?: string | null;
  created_at?: string | null;
  updated_at?: string | null;
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

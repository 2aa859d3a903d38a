import { writeFile } from 'node:fs/promises';
import { seg, type Transport } from './core.js';
import { CanaryError } from './errors.js';
import { follow, type FollowOptions } from './streaming.js';
import { PagePromise, nextPageQuery, pageItems, type Query } from './pagination.js';
import type {
  Call,
  CallCreateParams,
  CallEvent,
  CallListParams,
  CallUpdateParams,
  Flow,
  PhoneNumber,
  Recording,
  RequestOptions,
  SandboxCallee,
  SandboxCalleeParams,
  Trunk,
  TrunkParams,
  Voice,
  WebhookDelivery,
} from './types.js';

export interface DownloadOptions extends RequestOptions {
  /** Also write the audio to this file path. */
  path?: string;
}

function lister<T>(t: Transport, path: string, query: Query, options?: RequestOptions): PagePromise<T> {
  return new PagePromise<T>(query, (q) => t.request({ method: 'GET', path, query: q, options }));
}

export class Calls {
  constructor(private readonly t: Transport) {}

  /**
   * Place an outbound call. Resolves at once with status `queued`. An Idempotency-Key is
   * generated when `options.idempotencyKey` is not given and reused on every retry.
   */
  create(params: CallCreateParams, options?: RequestOptions): Promise<Call> {
    if (!params || typeof params !== 'object') throw new CanaryError('call parameters must be an object');
    return this.t.request<Call>({ method: 'POST', path: '/v1/voice/calls', body: params, options });
  }

  get(callId: string, options?: RequestOptions): Promise<Call> {
    return this.t.request<Call>({ method: 'GET', path: `/v1/voice/calls/${seg(callId)}`, options });
  }

  retrieve(callId: string, options?: RequestOptions): Promise<Call> {
    return this.get(callId, options);
  }

  /** `await` for the first page, or `for await (const call of calls.list())` for every call. */
  list(params: CallListParams = {}, options?: RequestOptions): PagePromise<Call> {
    return lister<Call>(this.t, '/v1/voice/calls', { ...params }, options);
  }

  /** Hang up a live call, or cancel a queued/ringing one. */
  async hangup(callId: string, options?: RequestOptions): Promise<Call> {
    const body = await this.t.request<Call | null>({
      method: 'POST',
      path: `/v1/voice/calls/${seg(callId)}/hangup`,
      options,
    });
    return body ?? ({ id: callId } as Call);
  }

  /**
   * Change a live call: redirect it, play now, send digits, control its recording or hang it
   * up (`{ status: 'completed' }`). Resolves with the call and `update` ({id, changes});
   * the timeline's `call.updated` says what was applied. A call that ended rejects with a
   * ConflictError (`call_not_live`).
   */
  update(callId: string, params: CallUpdateParams, options?: RequestOptions): Promise<Call> {
    if (!params || typeof params !== 'object') throw new CanaryError('update parameters must be an object');
    return this.t.request<Call>({ method: 'POST', path: `/v1/voice/calls/${seg(callId)}`, body: params, options });
  }

  /** The call's event timeline, oldest first (every page). */
  async events(callId: string, options?: RequestOptions): Promise<CallEvent[]> {
    const path = `/v1/voice/calls/${seg(callId)}/events`;
    const out: CallEvent[] = [];
    let query: Query | null = {};
    while (query) {
      const body: unknown = await this.t.request({ method: 'GET', path, query, options });
      const items = pageItems<CallEvent>(body);
      out.push(...items);
      query = items.length ? nextPageQuery(body, query) : null;
    }
    return out;
  }

  /**
   * The call's events as they happen (Server-Sent Events): `for await (const ev of calls.follow(id))`.
   * The timeline so far (after `lastEventId`), then live; ends once the call ended and its
   * recording and transcript are in. Reconnects by itself, never repeating or skipping an event.
   */
  follow(callId: string, options: FollowOptions = {}): AsyncGenerator<CallEvent> {
    return follow(this.t, `/v1/voice/calls/${seg(callId)}/events`, options);
  }

  /** The call's webhook deliveries, with every attempt. */
  async webhookDeliveries(callId: string, options?: RequestOptions): Promise<WebhookDelivery[]> {
    const body = await this.t.request({ method: 'GET', path: `/v1/voice/calls/${seg(callId)}/webhooks`, options });
    return pageItems<WebhookDelivery>(body);
  }

  /** The call's recording (NotFoundError until it exists). */
  recording(callId: string, options?: RequestOptions): Promise<Recording> {
    return this.t.request<Recording>({ method: 'GET', path: `/v1/voice/calls/${seg(callId)}/recording`, options });
  }

  /** Download the recording's audio (from its signed media URL). */
  async downloadRecording(callIdOrRecording: string | Recording, options: DownloadOptions = {}): Promise<Buffer> {
    const rec =
      typeof callIdOrRecording === 'string' ? await this.recording(callIdOrRecording, options) : callIdOrRecording;
    if (!rec?.url) throw new CanaryError('the recording has no download url yet');
    const url = new URL(rec.url, this.t.baseURL + '/').toString();
    const { path, ...rest } = options;
    const res = await this.t.send({
      method: 'GET',
      path: url,
      options: { ...rest, headers: { Accept: '*/*', ...(rest.headers ?? {}) } },
    });
    if (path) await writeFile(path, res.body);
    return res.body;
  }
}

export class Voices {
  constructor(private readonly t: Transport) {}

  list(params: Query = {}, options?: RequestOptions): PagePromise<Voice> {
    return lister<Voice>(this.t, '/v1/voice/voices', params, options);
  }
}

export class Numbers {
  constructor(private readonly t: Transport) {}

  list(params: Query = {}, options?: RequestOptions): PagePromise<PhoneNumber> {
    return lister<PhoneNumber>(this.t, '/v1/voice/numbers', params, options);
  }

  /** Add a verified caller ID (E.164) to your account. */
  create(number: string, fields: Record<string, unknown> = {}, options?: RequestOptions): Promise<PhoneNumber> {
    return this.t.request<PhoneNumber>({
      method: 'POST',
      path: '/v1/voice/numbers',
      body: { number, ...fields },
      options,
    });
  }

  add(number: string, fields: Record<string, unknown> = {}, options?: RequestOptions): Promise<PhoneNumber> {
    return this.create(number, fields, options);
  }

  /** Verify a live key's caller ID with the code its verification call spoke. */
  verify(number: string, code: string, options?: RequestOptions): Promise<PhoneNumber> {
    return this.t.request<PhoneNumber>({
      method: 'POST',
      path: `/v1/voice/numbers/${seg(number)}/verify`,
      body: { code },
      options,
    });
  }

  /** How the number answers incoming calls: `voice_url` or `flow_id`, and `webhook_url`; `null` clears one. */
  update(number: string, route: { voice_url?: string | null; flow_id?: string | null; webhook_url?: string | null },
         options?: RequestOptions): Promise<PhoneNumber> {
    return this.t.request<PhoneNumber>({ method: 'PATCH', path: `/v1/voice/numbers/${seg(number)}`, body: route, options });
  }

  async delete(number: string, options?: RequestOptions): Promise<void> {
    await this.t.request({ method: 'DELETE', path: `/v1/voice/numbers/${seg(number)}`, options });
  }
}

/** IVR flows (versioned documents; see the IVR docs for the format). */
export class Flows {
  constructor(private readonly t: Transport) {}

  /** Store a new flow (version 1). */
  create(flow: Record<string, unknown>, options?: RequestOptions): Promise<Flow> {
    return this.t.request<Flow>({ method: 'POST', path: '/v1/voice/flows', body: flow, options });
  }

  /** The latest version of a flow, or `{ version: N }`. */
  get(flowId: string, params: { version?: number } = {}, options?: RequestOptions): Promise<Flow> {
    return this.t.request<Flow>({ method: 'GET', path: `/v1/voice/flows/${seg(flowId)}`, query: { ...params }, options });
  }

  retrieve(flowId: string, params: { version?: number } = {}, options?: RequestOptions): Promise<Flow> {
    return this.get(flowId, params, options);
  }

  /** The latest version of every flow. */
  list(params: { limit?: number } & Query = {}, options?: RequestOptions): PagePromise<Flow> {
    return lister<Flow>(this.t, '/v1/voice/flows', params, options);
  }

  /** Save a new version of a flow. */
  update(flowId: string, flow: Record<string, unknown>, options?: RequestOptions): Promise<Flow> {
    return this.t.request<Flow>({ method: 'PUT', path: `/v1/voice/flows/${seg(flowId)}`, body: flow, options });
  }

  /** The flow's versions. */
  async versions(flowId: string, options?: RequestOptions): Promise<unknown[]> {
    const body = await this.t.request({ method: 'GET', path: `/v1/voice/flows/${seg(flowId)}/versions`, options });
    return pageItems<unknown>(body);
  }

  async delete(flowId: string, options?: RequestOptions): Promise<void> {
    await this.t.request({ method: 'DELETE', path: `/v1/voice/flows/${seg(flowId)}`, options });
  }

  /** Check a flow without storing it: `{ valid, errors }`, each error naming its step. */
  validate(flow: Record<string, unknown>, options?: RequestOptions): Promise<FlowValidation> {
    return this.t.request<FlowValidation>({ method: 'POST', path: '/v1/voice/flows/validate', body: flow, options });
  }

  /** Walk an inline `flow` or a stored `flow_id` with scripted input (`[{ press: '2' }, { say: 'billing' }]`):
   * the path a caller would take. No call is placed. */
  simulate(params: FlowSimulateParams, options?: RequestOptions): Promise<Record<string, unknown>> {
    return this.t.request({ method: 'POST', path: '/v1/voice/flows/simulate', body: params, options });
  }
}

export interface FlowValidation {
  valid: boolean;
  errors: { field: string; message: string; [k: string]: unknown }[];
}

export interface FlowSimulateParams {
  flow?: Record<string, unknown>;
  flow_id?: string;
  version?: number;
  inputs?: ({ press: string } | { say: string })[];
  answered_by?: string;
}

export interface ApiKey {
  object: 'api_key';
  id: string;
  prefix: string;
  mode: 'test' | 'live';
  created_at: string;
  revoked_at: string | null;
  current: boolean;
  /** Only in the response that created it. */
  key?: string;
}

/** The account's API keys: listed by prefix, created (the key is shown once), revoked. */
export class Keys {
  constructor(private readonly t: Transport) {}

  async list(options?: RequestOptions): Promise<ApiKey[]> {
    return pageItems<ApiKey>(await this.t.request({ method: 'GET', path: '/v1/voice/keys', options }));
  }

  create(params: { mode?: 'test' | 'live' } = {}, options?: RequestOptions): Promise<ApiKey> {
    return this.t.request<ApiKey>({ method: 'POST', path: '/v1/voice/keys', body: params, options });
  }

  async revoke(keyId: string, options?: RequestOptions): Promise<void> {
    await this.t.request({ method: 'DELETE', path: `/v1/voice/keys/${seg(keyId)}`, options });
  }
}

/** Scripted callees of sandbox numbers (`sk_test_` keys): who answers, what they press or say. */
export class SandboxCallees {
  constructor(private readonly t: Transport) {}

  list(options?: RequestOptions): PagePromise<SandboxCallee> {
    return lister<SandboxCallee>(this.t, '/v1/voice/sandbox/callees', {}, options);
  }

  create(params: SandboxCalleeParams, options?: RequestOptions): Promise<SandboxCallee> {
    return this.t.request<SandboxCallee>({ method: 'POST', path: '/v1/voice/sandbox/callees', body: params, options });
  }

  async delete(number: string, options?: RequestOptions): Promise<void> {
    await this.t.request({ method: 'DELETE', path: `/v1/voice/sandbox/callees/${seg(number)}`, options });
  }
}

export class Sandbox {
  readonly callees: SandboxCallees;

  constructor(private readonly t: Transport) {
    this.callees = new SandboxCallees(t);
  }

  /** A sandbox caller dials one of your numbers (`sk_test_` keys), e.g. `{ to, from, press: '1' }`. */
  callIn(body: { to: string; from: string; after?: number | string; press?: string; say?: string;
                 hangup_after?: number | string | null }, options?: RequestOptions): Promise<Call> {
    return this.t.request<Call>({ method: 'POST', path: '/v1/voice/sandbox/calls-in', body, options });
  }
}

/** The account's SIP trunk (used by `sk_live_` keys). */
export class TrunkResource {
  constructor(private readonly t: Transport) {}

  get(options?: RequestOptions): Promise<Trunk> {
    return this.t.request<Trunk>({ method: 'GET', path: '/v1/voice/trunk', options });
  }

  /** Create or replace the trunk. */
  update(params: TrunkParams, options?: RequestOptions): Promise<Trunk> {
    return this.t.request<Trunk>({ method: 'PUT', path: '/v1/voice/trunk', body: params, options });
  }

  async delete(options?: RequestOptions): Promise<void> {
    await this.t.request({ method: 'DELETE', path: '/v1/voice/trunk', options });
  }
}

/** The account's events, live. */
export class Events {
  constructor(private readonly t: Transport) {}

  /** Every event of every call of the account as it happens (`ev.call_id` says whose); never ends by itself. */
  follow(options: FollowOptions = {}): AsyncGenerator<CallEvent> {
    return follow(this.t, '/v1/voice/events', options);
  }
}

/** `canary.voice`: `call(...)` places a call; `calls`, `voices`, `numbers`, `flows` cover the rest. */
export class VoiceResource {
  readonly calls: Calls;
  readonly voices: Voices;
  readonly numbers: Numbers;
  readonly flows: Flows;
  readonly keys: Keys;
  readonly sandbox: Sandbox;
  readonly trunk: TrunkResource;
  readonly events: Events;

  constructor(t: Transport) {
    this.calls = new Calls(t);
    this.voices = new Voices(t);
    this.numbers = new Numbers(t);
    this.flows = new Flows(t);
    this.keys = new Keys(t);
    this.sandbox = new Sandbox(t);
    this.trunk = new TrunkResource(t);
    this.events = new Events(t);
  }

  /** Place an outbound call (same as `voice.calls.create`). */
  call(params: CallCreateParams, options?: RequestOptions): Promise<Call> {
    return this.calls.create(params, options);
  }
}

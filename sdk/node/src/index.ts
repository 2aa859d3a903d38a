import { Canary } from './client.js';

export default Canary;
export { Canary };
export type { ClientOptions } from './core.js';
export { DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT } from './core.js';
export * from './errors.js';
export * from './types.js';
export { Page, PagePromise } from './pagination.js';
export { Calls, Voices, Numbers, Flows, Keys, Sandbox, SandboxCallees, TrunkResource, VoiceResource, Events, type DownloadOptions, type ApiKey, type FlowValidation, type FlowSimulateParams } from './resources.js';
export { webhooks, verify, sign, generateHeader, SIGNATURE_HEADER, DEFAULT_TOLERANCE, MAX_HEADER_LENGTH } from './webhooks.js';
export type { Webhooks, WebhookPayload } from './webhooks.js';
export { backoffDelay } from './retry.js';
export { SSEParser, type FollowOptions, type SSEMessage } from './streaming.js';
export { VERSION } from './version.js';

import { Transport, type ClientOptions } from './core.js';
import { VoiceResource } from './resources.js';
import { webhooks, type Webhooks } from './webhooks.js';

/**
 * The Canary client.
 *
 *     import Canary from '@canary/node';
 *     const canary = new Canary('YOUR_API_KEY');
 *     const call = await canary.voice.call({ to: '+15551234567', from: '+15559876543',
 *       tts: { text: 'Hello from Canary!' } });
 */
export class Canary {
  static readonly webhooks: Webhooks = webhooks;
  readonly webhooks: Webhooks = webhooks;
  readonly voice: VoiceResource;
  /** The underlying HTTP transport (base URL, key, timeout, retries). */
  readonly transport: Transport;

  constructor(apiKey?: string | ClientOptions, options: ClientOptions = {}) {
    const opts: ClientOptions = typeof apiKey === 'object' && apiKey !== null ? { ...apiKey } : { ...options, apiKey: apiKey ?? options.apiKey };
    this.transport = new Transport(opts);
    this.voice = new VoiceResource(this.transport);
  }

  get baseURL(): string {
    return this.transport.baseURL;
  }
}

export default Canary;

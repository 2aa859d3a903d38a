import { FormEvent, useState } from 'react';
import { ApiError, Call, api } from '../api';
import { useApi } from '../hooks';
import { navigate } from '../router';
import { curlSnippet, nodeSnippet, pythonSnippet } from '../snippets';

interface Schema { components: { schemas: Record<string, { properties?: Record<string, { description?: string }> }> } }

export interface CallForm {
  to: string; from: string; message: 'tts' | 'audio'; text: string; voice: string; audioUrl: string;
  gather: boolean; gatherType: 'dtmf' | 'speech' | 'dtmf speech'; numDigits: string; gatherTimeout: string;
  record: boolean; transcribe: boolean; channels: 'mono' | 'dual'; webhookUrl: string;
}

export const EMPTY_FORM: CallForm = {
  to: '+15551234567', from: '+15559876543', message: 'tts', text: 'Hello! This is a call from Canary.', voice: '',
  audioUrl: '', gather: false, gatherType: 'dtmf', numDigits: '1', gatherTimeout: '5', record: false,
  transcribe: false, channels: 'mono', webhookUrl: '',
};

/** The POST /v1/voice/calls body for what the form holds (only what was entered). */
export function callBody(f: CallForm): Record<string, unknown> {
  const body: Record<string, unknown> = { to: f.to.trim(), from: f.from.trim() };
  if (f.message === 'tts') body.tts = { text: f.text, ...(f.voice ? { voice: f.voice } : {}) };
  else body.audio_url = f.audioUrl.trim();
  if (f.gather) {
    body.gather = {
      type: f.gatherType,
      ...(f.numDigits && f.gatherType !== 'speech' ? { num_digits: Number(f.numDigits) } : {}),
      ...(f.gatherTimeout ? { timeout: Number(f.gatherTimeout) } : {}),
    };
  }
  if (f.record) {
    body.record = true;
    if (f.transcribe) body.transcribe = true;
    if (f.channels === 'dual') body.recording_channels = 'dual';
  }
  if (f.webhookUrl.trim()) body.webhook_url = f.webhookUrl.trim();
  return body;
}

/** Place a call; the help of each field is the API's own (its OpenAPI document). */
export function PlaceCall() {
  const [f, setF] = useState<CallForm>(EMPTY_FORM);
  const [error, setError] = useState<ApiError | null>(null);
  const [tab, setTab] = useState<'curl' | 'python' | 'node'>('curl');
  const schema = useApi<Schema>('/openapi.json');
  const numbers = useApi<{ data: { number: string }[] }>('/v1/voice/numbers');
  const voices = useApi<{ data: { id: string; name?: string }[] }>('/v1/voice/voices');
  const help = (field: string) => schema.data?.components.schemas.CallCreate?.properties?.[field]?.description;
  const body = callBody(f);
  const origin = window.location.origin;
  const snippet = { curl: curlSnippet, python: pythonSnippet, node: nodeSnippet }[tab](origin, body);

  const set = <K extends keyof CallForm>(k: K) => (e: React.ChangeEvent<HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement>) => {
    const t = e.target as HTMLInputElement;
    setF({ ...f, [k]: t.type === 'checkbox' ? t.checked : t.value });
  };

  async function submit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    try {
      const call = await api<Call>('/v1/voice/calls', { body });
      navigate(`/calls/${call.id}`);
    } catch (err) {
      setError(err instanceof ApiError ? err : new ApiError(0, 'error', String(err)));
    }
  }

  const fieldError = (name: string) =>
    error?.field && (error.field === name || error.field.startsWith(`${name}.`)) ? <span className="error">{error.message}</span> : null;

  return (
    <section aria-labelledby="place-h" className="grid">
      <form onSubmit={submit} className="stack">
        <h1 id="place-h">Place a call</h1>
        <label>To<input type="tel" value={f.to} onChange={set('to')} required aria-describedby="h-to" /></label>
        <small id="h-to" className="hint">{help('to')}</small>{fieldError('to')}
        <label>From
          <input type="tel" value={f.from} onChange={set('from')} required list="numbers" aria-describedby="h-from" />
        </label>
        <datalist id="numbers">{numbers.data?.data.map((n) => <option key={n.number} value={n.number} />)}</datalist>
        <small id="h-from" className="hint">{help('from')}</small>{fieldError('from')}
        <fieldset>
          <legend>What the callee hears</legend>
          <label className="inline"><input type="radio" name="message" value="tts" checked={f.message === 'tts'} onChange={set('message')} /> Text to speech</label>
          <label className="inline"><input type="radio" name="message" value="audio" checked={f.message === 'audio'} onChange={set('message')} /> Audio URL</label>
          {f.message === 'tts' ? (
            <>
              <label htmlFor="tts-text">Text</label>
              <textarea id="tts-text" value={f.text} onChange={set('text')} rows={3} required />
              <small className="hint">{help('tts')}</small>
              <label>Voice
                <select value={f.voice} onChange={set('voice')}>
                  <option value="">default</option>
                  {voices.data?.data.map((v) => <option key={v.id} value={v.id}>{v.name ?? v.id}</option>)}
                </select>
              </label>
            </>
          ) : (
            <><label>Audio URL<input type="url" value={f.audioUrl} onChange={set('audioUrl')} required /></label>
              <small className="hint">{help('audio_url')}</small></>
          )}
          {fieldError('tts')}{fieldError('audio_url')}
        </fieldset>
        <fieldset>
          <legend>Gather</legend>
          <label className="inline"><input type="checkbox" checked={f.gather} onChange={set('gather')} /> Gather input after the prompt</label>
          {f.gather && (
            <>
              <label>Input
                <select value={f.gatherType} onChange={set('gatherType')}>
                  <option value="dtmf">keypad</option><option value="speech">speech</option><option value="dtmf speech">both</option>
                </select>
              </label>
              {f.gatherType !== 'speech' && <label>Number of digits<input type="number" min={1} max={64} value={f.numDigits} onChange={set('numDigits')} /></label>}
              <label>Timeout (s)<input type="number" min={1} max={120} value={f.gatherTimeout} onChange={set('gatherTimeout')} /></label>
            </>
          )}
          {fieldError('gather')}
        </fieldset>
        <fieldset>
          <legend>Recording</legend>
          <label className="inline"><input type="checkbox" checked={f.record} onChange={set('record')} /> Record the call</label>
          {f.record && (
            <>
              <label className="inline"><input type="checkbox" checked={f.transcribe} onChange={set('transcribe')} /> Transcribe it</label>
              <label>Channels
                <select value={f.channels} onChange={set('channels')}><option value="mono">mono (mixed)</option><option value="dual">dual (one per side)</option></select>
              </label>
            </>
          )}
        </fieldset>
        <label>Webhook URL<input type="url" value={f.webhookUrl} onChange={set('webhookUrl')} placeholder="https://yourapp.example/webhooks" /></label>
        <small className="hint">{help('webhook_url')}</small>{fieldError('webhook_url')}
        {error && <p role="alert" className="error">{error.code}: {error.message}</p>}
        <button type="submit">Place call</button>
      </form>
      <div>
        <h2>The same in code</h2>
        <div role="tablist" aria-label="Snippet language" className="tabs">
          {(['curl', 'python', 'node'] as const).map((t) => (
            <button key={t} type="button" role="tab" aria-selected={tab === t} onClick={() => setTab(t)}>{t === 'node' ? 'Node' : t === 'python' ? 'Python' : 'curl'}</button>
          ))}
        </div>
        <pre className="snippet" role="tabpanel" aria-label={`${tab} snippet`}><code>{snippet}</code></pre>
      </div>
    </section>
  );
}

import { FormEvent, useState } from 'react';
import { ApiError, api } from '../api';
import { useApi, when } from '../hooks';

interface Callee { number: string; ring: number; answer: boolean; after: number; press: string; say: string; hangup_after: number | null }
interface NumberRow { number: string; verification: string; created_at: string }
interface Key { id: string; prefix: string; mode: string; created_at: string; revoked_at: string | null; current: boolean }

/** Run `fn`, reporting an API error in `setError` instead of throwing. */
function guarded(setError: (m: string | null) => void, fn: () => Promise<unknown>, then: () => void) {
  setError(null);
  fn().then(then, (e) => setError(e instanceof ApiError ? `${e.code}: ${e.message}` : String(e)));
}

/** Sandbox callees, caller ids and API keys of the account. */
export function Sandbox() {
  return (
    <section aria-labelledby="sandbox-h">
      <h1 id="sandbox-h">Sandbox</h1>
      <div className="grid">
        <Callees />
        <div>
          <Numbers />
          <Keys />
        </div>
      </div>
    </section>
  );
}

function Callees() {
  const list = useApi<{ data: Callee[] }>('/v1/voice/sandbox/callees');
  const [error, setError] = useState<string | null>(null);
  const [f, setF] = useState({ number: '', ring: '1', after: '1', press: '', say: '', answer: true, hangup_after: '' });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const body: Record<string, unknown> = { number: f.number.trim(), ring: Number(f.ring), after: Number(f.after), answer: f.answer };
    if (f.press) body.press = f.press;
    if (f.say) body.say = f.say;
    if (f.hangup_after) body.hangup_after = Number(f.hangup_after);
    guarded(setError, () => api('/v1/voice/sandbox/callees', { body }), () => { list.reload(); setF({ ...f, number: '' }); });
  };
  return (
    <section className="panel" aria-labelledby="callees-h">
      <h2 id="callees-h">Scripted callees</h2>
      <form onSubmit={submit} className="stack" aria-label="Add a scripted callee">
        <label>Number<input type="tel" required value={f.number} onChange={(e) => setF({ ...f, number: e.target.value })} placeholder="+15557770001" /></label>
        <label className="inline"><input type="checkbox" checked={f.answer} onChange={(e) => setF({ ...f, answer: e.target.checked })} /> Answers</label>
        <label>Rings for (s)<input type="number" min={0} step="0.1" value={f.ring} onChange={(e) => setF({ ...f, ring: e.target.value })} /></label>
        <label>Acts after answering (s)<input type="number" min={0} step="0.1" value={f.after} onChange={(e) => setF({ ...f, after: e.target.value })} /></label>
        <label>Presses<input value={f.press} pattern="[0-9*#A-D]*" onChange={(e) => setF({ ...f, press: e.target.value })} placeholder="1234#" /></label>
        <label>Says<input value={f.say} onChange={(e) => setF({ ...f, say: e.target.value })} placeholder="billing please" /></label>
        <label>Hangs up after (s)<input type="number" min={0} step="0.1" value={f.hangup_after} onChange={(e) => setF({ ...f, hangup_after: e.target.value })} /></label>
        {error && <p role="alert" className="error">{error}</p>}
        <button type="submit">Save callee</button>
      </form>
      <ul className="items">
        {list.data?.data.map((c) => (
          <li key={c.number}>
            <code>{c.number}</code> {c.answer ? `rings ${c.ring}s, after ${c.after}s` : 'never answers'}
            {c.press && `, presses ${c.press}`}{c.say && `, says “${c.say}”`}{c.hangup_after != null && `, hangs up after ${c.hangup_after}s`}
            <button type="button" className="link" aria-label={`Remove callee ${c.number}`}
                    onClick={() => guarded(setError, () => api(`/v1/voice/sandbox/callees/${encodeURIComponent(c.number)}`, { method: 'DELETE' }), list.reload)}>Remove</button>
          </li>
        ))}
      </ul>
    </section>
  );
}

function Numbers() {
  const list = useApi<{ data: NumberRow[] }>('/v1/voice/numbers');
  const [number, setNumber] = useState('');
  const [error, setError] = useState<string | null>(null);
  return (
    <section className="panel" aria-labelledby="numbers-h">
      <h2 id="numbers-h">Caller IDs</h2>
      <form className="row" onSubmit={(e) => { e.preventDefault(); guarded(setError, () => api('/v1/voice/numbers', { body: { number: number.trim() } }), () => { setNumber(''); list.reload(); }); }}>
        <label>Number<input type="tel" required value={number} onChange={(e) => setNumber(e.target.value)} placeholder="+15559876543" /></label>
        <button type="submit">Add number</button>
      </form>
      {error && <p role="alert" className="error">{error}</p>}
      <ul className="items">
        {list.data?.data.map((n) => (
          <li key={n.number}><code>{n.number}</code> {n.verification}
            <button type="button" className="link" aria-label={`Remove number ${n.number}`}
                    onClick={() => guarded(setError, () => api(`/v1/voice/numbers/${encodeURIComponent(n.number)}`, { method: 'DELETE' }), list.reload)}>Remove</button>
          </li>
        ))}
      </ul>
    </section>
  );
}

function Keys() {
  const list = useApi<{ data: Key[] }>('/v1/voice/keys');
  const [created, setCreated] = useState<string | null>(null);
  const [mode, setMode] = useState('test');
  const [error, setError] = useState<string | null>(null);
  return (
    <section className="panel" aria-labelledby="keys-h">
      <h2 id="keys-h">API keys</h2>
      <form className="row" onSubmit={(e) => { e.preventDefault(); guarded(setError, () => api<{ key: string }>('/v1/voice/keys', { body: { mode } }).then((k) => setCreated(k.key)), list.reload); }}>
        <label>Mode<select value={mode} onChange={(e) => setMode(e.target.value)}><option value="test">test (sandbox)</option><option value="live">live (SIP)</option></select></label>
        <button type="submit">Create key</button>
      </form>
      {created && (
        <div className="once" role="alert">
          <p>The new key, shown this once (only its hash is stored):</p>
          <code data-testid="new-key">{created}</code>
          <div className="row">
            <button type="button" onClick={() => navigator.clipboard?.writeText(created)}>Copy</button>
            <button type="button" className="link" onClick={() => setCreated(null)}>I have stored it</button>
          </div>
        </div>
      )}
      {error && <p role="alert" className="error">{error}</p>}
      <ul className="items">
        {list.data?.data.map((k) => (
          <li key={k.id} className={k.revoked_at ? 'revoked' : ''}>
            <code>{k.prefix}…</code> {k.mode} · {when(k.created_at)}
            {k.current && <span className="badge">this tab</span>}
            {k.revoked_at ? <span> revoked {when(k.revoked_at)}</span> : !k.current && (
              <button type="button" className="link" aria-label={`Revoke key ${k.prefix}`}
                      onClick={() => guarded(setError, () => api(`/v1/voice/keys/${k.id}`, { method: 'DELETE' }), list.reload)}>Revoke</button>
            )}
          </li>
        ))}
      </ul>
    </section>
  );
}

import { FormEvent, useState } from 'react';
import { ApiError } from '../api';

/** Checks a key against the API before keeping it (a typo fails here, not on every page). */
export function SignIn({ onSignedIn }: { onSignedIn: (key: string) => void }) {
  const [key, setKey] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const k = key.trim();
    if (!/^sk_(test|live)_/.test(k)) {
      setError('An API key starts with sk_test_ or sk_live_.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const res = await fetch('/v1/voice/calls?limit=1', { headers: { Authorization: `Bearer ${k}` } });
      if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        throw new ApiError(res.status, body.error?.code ?? 'http_error', body.error?.message ?? res.statusText);
      }
      onSignedIn(k);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <main id="main" className="signin">
      <h1>Canary Voice console</h1>
      <form onSubmit={submit} aria-describedby="signin-help">
        <label htmlFor="api-key">API key</label>
        <input id="api-key" type="password" autoComplete="off" spellCheck={false} value={key}
               onChange={(e) => setKey(e.target.value)} placeholder="sk_test_…" required />
        <p id="signin-help" className="hint">Kept in this tab only (sessionStorage); closing the tab signs out.</p>
        {error && <p role="alert" className="error">{error}</p>}
        <button type="submit" disabled={busy}>{busy ? 'Checking…' : 'Sign in'}</button>
      </form>
    </main>
  );
}

import { useEffect, useState } from 'react';
import { Call, STATUSES, follow } from '../api';
import { useApi, useDebounced, when } from '../hooks';
import { linkProps } from '../router';

interface Filters { status: string; number: string; after: string; before: string }

/** The query of the calls list for these filters (dates are whole local days). */
export function callsQuery(f: Filters): string {
  const q = new URLSearchParams({ limit: '50' });
  if (f.status) q.set('status', f.status);
  if (f.number.trim()) q.set('to', f.number.trim());
  if (f.after) q.set('created_after', new Date(`${f.after}T00:00:00`).toISOString());
  if (f.before) {
    const end = new Date(`${f.before}T00:00:00`);
    end.setDate(end.getDate() + 1);
    q.set('created_before', end.toISOString());
  }
  return `/v1/voice/calls?${q}`;
}

/** The account's calls, refreshed as the account's event stream reports changes. */
export function Calls() {
  const [f, setF] = useState<Filters>({ status: '', number: '', after: '', before: '' });
  const { data, error, reload } = useApi<{ data: Call[]; has_more: boolean }>(callsQuery(f));
  const [live, setLive] = useState(false);
  const refresh = useDebounced(reload, 300);

  useEffect(() => {
    const ctl = new AbortController();
    follow('/v1/voice/events?follow=true', () => refresh(), ctl.signal, setLive)
      .catch(() => setLive(false));
    return () => ctl.abort();
  }, [refresh]);

  const set = (k: keyof Filters) => (e: React.ChangeEvent<HTMLInputElement | HTMLSelectElement>) =>
    setF({ ...f, [k]: e.target.value });

  return (
    <section aria-labelledby="calls-h">
      <div className="row">
        <h1 id="calls-h">Calls</h1>
        <span className={`badge ${live ? 'ok' : ''}`} role="status">{live ? 'live' : 'connecting…'}</span>
      </div>
      <form className="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter calls">
        <label>Status
          <select value={f.status} onChange={set('status')}>
            <option value="">any</option>
            {STATUSES.map((s) => <option key={s}>{s}</option>)}
          </select>
        </label>
        <label>To number<input type="tel" value={f.number} onChange={set('number')} placeholder="+1555…" /></label>
        <label>From date<input type="date" value={f.after} onChange={set('after')} /></label>
        <label>To date<input type="date" value={f.before} onChange={set('before')} /></label>
      </form>
      {error && <p role="alert" className="error">{error.message}</p>}
      <div className="table-wrap">
        <table className="calls">
          <thead><tr><th>Call</th><th>Status</th><th>To</th><th>From</th><th>Created</th><th>Duration</th></tr></thead>
          <tbody>
            {data?.data.map((c) => (
              <tr key={c.id} data-call-id={c.id}>
                <td><a {...linkProps(`/calls/${c.id}`)}>{c.id}</a></td>
                <td><span className={`status s-${c.status}`} data-testid="call-status">{c.status}</span></td>
                <td>{c.to}</td><td>{c.from}</td><td>{when(c.created_at)}</td>
                <td>{c.duration != null ? `${c.duration} s` : '—'}</td>
              </tr>
            ))}
            {data && data.data.length === 0 && <tr><td colSpan={6}>No calls match.</td></tr>}
          </tbody>
        </table>
      </div>
    </section>
  );
}

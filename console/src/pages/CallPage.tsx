import { useEffect, useRef, useState } from 'react';
import { ApiError, Call, CallEvent, LIVE_STATUSES, api, blob, eventOf, follow, sameOrigin } from '../api';
import { useApi, useDebounced, when } from '../hooks';
import { linkProps } from '../router';
import { Line, liveTranscript, transcriptLines } from '../transcript';

interface Delivery {
  event_id: string;
  type: string;
  url: string;
  status: string;
  attempts: number;
  max_attempts: number;
  last_status_code: number | null;
  last_error: string | null;
  attempt_log: { attempt: number; at: string; status_code: number | null; latency_ms: number | null; error: string | null }[];
}

interface Recording { id: string; url: string; duration: number; transcription: { text: string; confidence: number } | null }

/** One call: its state, timeline (live while it runs), gather, webhooks, recording and transcript. */
export function CallPage({ id }: { id: string }) {
  const call = useApi<Call>(`/v1/voice/calls/${encodeURIComponent(id)}`);
  const hooks = useApi<{ data: Delivery[] }>(`/v1/voice/calls/${encodeURIComponent(id)}/webhooks`);
  const [events, setEvents] = useState<CallEvent[]>([]);
  const [streaming, setStreaming] = useState(false);
  const [recording, setRecording] = useState<Recording | null>(null);
  const refresh = useDebounced(() => { call.reload(); hooks.reload(); loadRecording(); }, 250);

  async function loadRecording() {
    try {
      setRecording(await api<Recording>(`/v1/voice/calls/${encodeURIComponent(id)}/recording`));
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
    }
  }

  useEffect(() => {
    const ctl = new AbortController();
    const seen = new Set<string>();
    setEvents([]);
    follow(`/v1/voice/calls/${encodeURIComponent(id)}/events?follow=true`, (m) => {
      const ev = eventOf(m);
      if (ev && !seen.has(ev.id)) {
        seen.add(ev.id);
        setEvents((old) => [...old, ev]);
      }
      refresh();
    }, ctl.signal, setStreaming).catch(() => setStreaming(false));
    return () => ctl.abort();
  }, [id, refresh]);

  const c = call.data;
  if (call.error) return <p role="alert" className="error">{call.error.message}</p>;
  if (!c) return <p>Loading…</p>;
  const live = LIVE_STATUSES.includes(c.status);
  const completed = [...events].reverse().find((e) => e.type === 'transcription.completed');
  const gathers = events.filter((e) => e.type === 'gather.completed' || e.type === 'gather.timeout');

  return (
    <section aria-labelledby="call-h" className="call-page">
      <p><a {...linkProps('/calls')}>← Calls</a></p>
      <div className="row">
        <h1 id="call-h">{c.id}</h1>
        <span className={`status s-${c.status}`} data-testid="call-status" role="status">{c.status}</span>
        {live && <HangUp id={c.id} onDone={call.reload} />}
      </div>
      <dl className="facts">
        <dt>To</dt><dd>{c.to}</dd><dt>From</dt><dd>{c.from}</dd>
        <dt>Created</dt><dd>{when(c.created_at)}</dd><dt>Answered</dt><dd>{when(c.answered_at)}</dd>
        <dt>Ended</dt><dd>{when(c.ended_at)}</dd><dt>Duration</dt><dd>{c.duration != null ? `${c.duration} s` : '—'}</dd>
        {c.end_reason && <><dt>End reason</dt><dd>{c.end_reason}{c.hangup_by ? ` (${c.hangup_by})` : ''}</dd></>}
        {c.answered_by && <><dt>Answered by</dt><dd>{c.answered_by}</dd></>}
      </dl>
      <div className="grid">
        <div>
          <Player id={id} recording={recording} completed={completed} />
          {live && <LiveTranscript events={events} />}
          <h2>Gather</h2>
          {gathers.length === 0 && !c.gather && <p className="hint">No input gathered.</p>}
          <ul className="gathers">
            {gathers.map((g) => (
              <li key={g.id}>{g.type === 'gather.timeout' ? 'timeout' : describeGather(g.data)} <small>{when(g.occurred_at)}</small></li>
            ))}
          </ul>
          <h2>Webhooks</h2>
          <Webhooks deliveries={hooks.data?.data ?? []} />
        </div>
        <div>
          <h2>Timeline {streaming && <span className="badge ok">live</span>}</h2>
          <ol className="timeline" aria-live="polite">
            {events.map((e) => (
              <li key={e.id}>
                <time dateTime={e.occurred_at}>{new Date(e.occurred_at).toLocaleTimeString()}</time>
                <code>{e.type}</code>
                {Object.keys(e.data ?? {}).length > 0 && <details><summary>data</summary><pre>{JSON.stringify(e.data, null, 2)}</pre></details>}
              </li>
            ))}
          </ol>
        </div>
      </div>
    </section>
  );
}

function describeGather(d: Record<string, unknown>): string {
  const parts = [];
  if (d.digits) parts.push(`pressed ${d.digits}`);
  if (d.speech) parts.push(`said “${d.speech}”${typeof d.confidence === 'number' ? ` (${Math.round(d.confidence * 100)}%)` : ''}`);
  return parts.join(', ') || 'no input';
}

function HangUp({ id, onDone }: { id: string; onDone: () => void }) {
  const [error, setError] = useState<string | null>(null);
  return (
    <>
      <button type="button" className="danger" onClick={() =>
        api(`/v1/voice/calls/${encodeURIComponent(id)}/hangup`, { method: 'POST', body: {} })
          .then(onDone, (e) => setError(e.message))}>Hang up</button>
      {error && <span role="alert" className="error">{error}</span>}
    </>
  );
}

function Player({ id, recording, completed }: { id: string; recording: Recording | null; completed?: CallEvent }) {
  const audio = useRef<HTMLAudioElement>(null);
  const [src, setSrc] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const url = recording?.url;
  // The link is signed anew by every GET of the recording (its expiry moves on each second), and
  // the page reloads the recording on each event: fetching the audio again for each new link
  // would reset the player under the listener. The same recording (path and format) keeps its audio.
  const latest = useRef(url);
  latest.current = url;
  const key = url ? url.replace(/[?&](expires|signature)=[^&]*/g, '') : undefined;

  useEffect(() => {
    const url = latest.current;
    if (!url) return;
    const ctl = new AbortController();
    let made: string | null = null;
    blob(sameOrigin(url), ctl.signal)
      .then((b) => { made = URL.createObjectURL(b); setSrc(made); })
      .catch((e) => { if (!ctl.signal.aborted) setError(e.message); });
    return () => { ctl.abort(); if (made) URL.revokeObjectURL(made); };
  }, [key]);

  const lines: Line[] = transcriptLines(completed?.data, recording?.transcription ?? null);
  const confidence = (completed?.data.confidence as number | undefined) ?? recording?.transcription?.confidence;
  const seek = (t: number) => {
    if (!audio.current) return;
    audio.current.currentTime = t;
    void audio.current.play().catch(() => {});
  };
  return (
    <>
      <h2>Recording</h2>
      {!recording && <p className="hint">No recording (yet).</p>}
      {error && <p role="alert" className="error">{error}</p>}
      {recording && (
        <audio ref={audio} controls src={src ?? undefined} aria-label={`Recording of ${id}`} data-testid="recording" preload="auto" />
      )}
      <h2>Transcript {confidence != null && <small>confidence {Math.round(confidence * 100)}%</small>}</h2>
      {lines.length === 0 && <p className="hint">No transcript (yet).</p>}
      <ol className="transcript" data-testid="transcript">
        {lines.map((l, i) => (
          <li key={i} className={`ch-${l.channel}`}>
            <button type="button" className="line" onClick={() => seek(l.start)}
                    aria-label={`Play from ${l.start.toFixed(1)} seconds: ${l.text}`}>
              <span className="t">{l.start.toFixed(1)}s</span>
              <span className="who">{l.channel}</span>
              <span className="text">{l.text}</span>
              {l.confidence != null && <span className="conf">{Math.round(l.confidence * 100)}%</span>}
            </button>
          </li>
        ))}
      </ol>
    </>
  );
}

function LiveTranscript({ events }: { events: CallEvent[] }) {
  const lines = liveTranscript(events);
  return (
    <>
      <h2>Live transcript</h2>
      {lines.length === 0 && <p className="hint">Nothing heard yet (live transcripts need <code>transcribe: true</code>).</p>}
      <ol className="transcript live" aria-live="polite">
        {lines.map((l) => <li key={l.key} className={`ch-${l.channel}`}><span className="who">{l.channel}</span> {l.text}{l.final ? '' : '…'}</li>)}
      </ol>
    </>
  );
}

function Webhooks({ deliveries }: { deliveries: Delivery[] }) {
  if (deliveries.length === 0) return <p className="hint">No webhook deliveries.</p>;
  return (
    <div className="table-wrap">
      <table>
        <thead><tr><th>Event</th><th>Status</th><th>Attempts</th><th>Last answer</th></tr></thead>
        <tbody>
          {deliveries.map((d) => (
            <tr key={d.event_id}>
              <td><code>{d.type}</code><br /><small>{d.url}</small></td>
              <td>{d.status}</td>
              <td>
                <details><summary>{d.attempts}/{d.max_attempts}</summary>
                  <ul>{d.attempt_log.map((a) => <li key={a.attempt}>#{a.attempt} {when(a.at)}: {a.status_code ?? a.error} {a.latency_ms != null ? `${a.latency_ms} ms` : ''}</li>)}</ul>
                </details>
              </td>
              <td>{d.last_status_code ?? d.last_error ?? '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

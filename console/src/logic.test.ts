import { describe, expect, it } from 'vitest';
import { parseSSE } from './api';
import { edges, errorsByStep, layout, lineDiff, pathEdges, stableJson, starterFlow, withPrompt, promptText } from './flow';
import { curlSnippet, nodeSnippet, pythonSnippet } from './snippets';
import { callBody, EMPTY_FORM } from './pages/PlaceCall';
import { callsQuery } from './pages/Calls';
import { liveTranscript, transcriptLines } from './transcript';

describe('parseSSE', () => {
  it('splits complete messages and keeps the unfinished rest', () => {
    const { messages, rest } = parseSSE('id: 1\nevent: call.ringing\ndata: {"a":1}\n\n: keepalive\n\nid: 2\ndata: x');
    expect(messages).toEqual([{ id: '1', event: 'call.ringing', data: '{"a":1}' }]);
    expect(rest).toBe('id: 2\ndata: x');
  });
  it('reads CRLF streams and multi-line data', () => {
    expect(parseSSE('event: end\r\ndata: a\r\ndata: b\r\n\r\n').messages).toEqual([{ id: undefined, event: 'end', data: 'a\nb' }]);
  });
});

describe('flow graph', () => {
  const flow = starterFlow();
  it('draws every branch, next and default as an edge', () => {
    flow.steps.menu.default = 'menu';
    expect(edges(flow)).toEqual([
      { from: 'menu', to: 'menu', label: 'default' },
      { from: 'menu', to: 'sales', label: '1' },
      { from: 'sales', to: 'bye', label: '' },
    ]);
  });
  it('lays steps out in layers from the start; unreachable ones last', () => {
    const f = { ...flow, steps: { ...flow.steps, lost: { kind: 'hangup' } } };
    const byName = Object.fromEntries(layout(f).nodes.map((n) => [n.name, n.layer]));
    expect(byName).toEqual({ menu: 0, sales: 1, bye: 2, lost: 3 });
  });
  it('puts the API errors on their step', () => {
    const m = errorsByStep([{ field: 'steps.menu', code: 'missing_target', message: 'x' }, { field: 'start', code: 'missing_target', message: 'y' }]);
    expect(m.get('menu')?.[0].code).toBe('missing_target');
    expect(m.get('')?.[0].field).toBe('start');
  });
  it('marks the walked edges', () => {
    expect([...pathEdges(['menu', 'support', 'menu'])]).toEqual(['menu>support', 'support>menu']);
  });
  it('edits a gather prompt as a say item', () => {
    const s = withPrompt(flow.steps.menu, 'Press 2');
    expect(s.prompt).toEqual({ kind: 'say', text: 'Press 2' });
    expect(promptText(s)).toBe('Press 2');
  });
});

describe('lineDiff', () => {
  it('shows added and removed lines', () => {
    expect(lineDiff('a\nb\nc', 'a\nc\nd')).toEqual([
      { op: ' ', text: 'a' }, { op: '-', text: 'b' }, { op: ' ', text: 'c' }, { op: '+', text: 'd' },
    ]);
  });
  it('ignores the order of keys', () => {
    expect(lineDiff(stableJson({ b: 1, a: { d: 2, c: 3 } }), stableJson({ a: { c: 3, d: 2 }, b: 1 })).every((d) => d.op === ' ')).toBe(true);
  });
});

describe('place a call', () => {
  it('sends only what was entered', () => {
    expect(callBody(EMPTY_FORM)).toEqual({ to: '+15551234567', from: '+15559876543', tts: { text: 'Hello! This is a call from Canary.' } });
    const b = callBody({ ...EMPTY_FORM, message: 'audio', audioUrl: 'https://x.test/a.mp3', gather: true, record: true, transcribe: true, webhookUrl: 'https://h.test' });
    expect(b).toMatchObject({ audio_url: 'https://x.test/a.mp3', gather: { type: 'dtmf', num_digits: 1, timeout: 5 }, record: true, transcribe: true, webhook_url: 'https://h.test' });
    expect(b).not.toHaveProperty('tts');
  });
  it('writes the same call in curl, Python and Node', () => {
    const body = { to: '+1555', from: '+1666', tts: { text: "it's" }, record: true };
    expect(curlSnippet('http://h', body)).toContain(`-d '{"to":"+1555","from":"+1666","tts":{"text":"it'\\''s"},"record":true}'`);
    expect(pythonSnippet('http://h', body)).toContain('from_="+1666"');
    expect(pythonSnippet('http://h', body)).toContain('record=True');
    expect(nodeSnippet('http://h', body)).toContain("tts: { text: 'it\\'s' }");
  });
  it('filters calls by whole days', () => {
    const q = new URLSearchParams(callsQuery({ status: 'completed', number: ' +1555 ', after: '2024-05-01', before: '2024-05-01' }).split('?')[1]);
    expect(q.get('status')).toBe('completed');
    expect(q.get('to')).toBe('+1555');
    expect(new Date(q.get('created_before')!).getTime() - new Date(q.get('created_after')!).getTime()).toBe(86_400_000);
  });
});

describe('transcripts', () => {
  it('lists segments per channel in time order, else the whole text', () => {
    const lines = transcriptLines({ confidence: 0.9, segments: [{ start: 2, end: 3, text: ' yes ', speaker: 'callee' }, { start: 0, end: 1, text: 'hello', speaker: 'agent' }] }, null);
    expect(lines.map((l) => [l.start, l.channel, l.text])).toEqual([[0, 'agent', 'hello'], [2, 'callee', 'yes']]);
    expect(transcriptLines(undefined, { text: 'hi there', confidence: 0.8 })).toEqual([{ start: 0, end: 0, channel: 'mixed', text: 'hi there', confidence: 0.8 }]);
  });
  it('keeps the newest text of each live utterance', () => {
    const ev = (text: string, final = false) => ({ id: text, type: 'transcription.partial', occurred_at: '', data: { text, utterance: 1, channel: 'callee', final } });
    expect(liveTranscript([ev('hel'), ev('hello', true)])).toEqual([{ key: 'callee:1', channel: 'callee', text: 'hello', final: true }]);
  });
});

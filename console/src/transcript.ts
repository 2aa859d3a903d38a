// Transcript lines from the events: what the call page lists and seeks the recording by.
import type { CallEvent } from './api';

export interface Line { start: number; end: number; channel: string; text: string; confidence: number | null }

interface Segment { start?: number; end?: number; text?: string; speaker?: string; channel?: string; confidence?: number }

/**
 * The lines of a finished transcript: its segments (start time, channel) when
 * `transcription.completed` had them, else the whole text as one line from 0 s.
 */
export function transcriptLines(completed: Record<string, unknown> | undefined,
                                summary: { text: string; confidence: number } | null): Line[] {
  const segments = (completed?.segments as Segment[] | undefined) ?? [];
  const lines = segments
    .filter((s) => s.text && s.text.trim())
    .map((s) => ({
      start: Number(s.start ?? 0), end: Number(s.end ?? s.start ?? 0), channel: s.speaker ?? s.channel ?? 'mixed',
      text: s.text!.trim(), confidence: typeof s.confidence === 'number' ? s.confidence : null,
    }));
  if (lines.length) return lines.sort((a, b) => a.start - b.start);
  const text = (completed?.text as string | undefined) ?? summary?.text;
  const confidence = (completed?.confidence as number | undefined) ?? summary?.confidence ?? null;
  return text && text.trim() ? [{ start: 0, end: 0, channel: 'mixed', text: text.trim(), confidence }] : [];
}

export interface LiveLine { key: string; channel: string; text: string; final: boolean }

/** The live transcript: each utterance's newest text (a newer partial replaces the older). */
export function liveTranscript(events: CallEvent[]): LiveLine[] {
  const byKey = new Map<string, LiveLine>();
  for (const e of events) {
    if (e.type !== 'transcription.partial') continue;
    const channel = String(e.data.channel ?? 'callee');
    const key = `${channel}:${e.data.utterance_id ?? e.data.utterance ?? 0}`;
    byKey.set(key, { key, channel, text: String(e.data.text ?? ''), final: Boolean(e.data.final) });
  }
  return [...byKey.values()];
}

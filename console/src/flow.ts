// A flow as a graph: its edges, a layered layout, the API's errors per step, and a diff of versions.
import type { FieldError } from './api';

export type Step = Record<string, unknown> & { kind: string };
export interface Flow { name?: string; description?: string; voice?: string; start: string; steps: Record<string, Step> }

export interface Edge { from: string; to: string; label: string }

/** Every edge of the flow: next/default/on_timeout/goto and each branch (the keys a caller presses or says). */
export function edges(flow: Flow): Edge[] {
  const out: Edge[] = [];
  for (const [name, step] of Object.entries(flow.steps)) {
    for (const key of ['next', 'default', 'on_timeout', 'step'] as const) {
      if (key === 'step' && step.kind !== 'goto') continue;
      if (typeof step[key] === 'string') out.push({ from: name, to: step[key] as string, label: key === 'next' || key === 'step' ? '' : key });
    }
    const branches = step.branches as Record<string, unknown> | undefined;
    if (branches && typeof branches === 'object') {
      for (const [k, v] of Object.entries(branches)) if (typeof v === 'string') out.push({ from: name, to: v, label: k });
    }
  }
  return out;
}

export interface Placed { name: string; x: number; y: number; layer: number }
export const NODE_W = 168;
export const NODE_H = 64;
const GAP_X = 56;
const GAP_Y = 64;

/**
 * Nodes in layers by their distance from `start` (breadth first), left to right in the
 * order they were reached; steps nothing reaches go in a last layer of their own.
 */
export function layout(flow: Flow): { nodes: Placed[]; width: number; height: number } {
  const depth = new Map<string, number>();
  const out = edges(flow);
  if (flow.steps[flow.start]) depth.set(flow.start, 0);
  const queue = flow.steps[flow.start] ? [flow.start] : [];
  while (queue.length) {
    const n = queue.shift()!;
    for (const e of out) {
      if (e.from === n && flow.steps[e.to] && !depth.has(e.to)) {
        depth.set(e.to, depth.get(n)! + 1);
        queue.push(e.to);
      }
    }
  }
  const last = Math.max(-1, ...depth.values()) + 1;
  for (const name of Object.keys(flow.steps)) if (!depth.has(name)) depth.set(name, last);
  const layers: string[][] = [];
  for (const [name, d] of depth) (layers[d] ??= []).push(name);
  const nodes: Placed[] = [];
  const widest = Math.max(1, ...layers.map((l) => l?.length ?? 0));
  const width = widest * (NODE_W + GAP_X) + GAP_X;
  layers.forEach((names, layer) => {
    const row = (names ?? []).length * (NODE_W + GAP_X) - GAP_X;
    names?.forEach((name, i) => nodes.push({ name, layer, x: (width - row) / 2 + i * (NODE_W + GAP_X), y: GAP_Y / 2 + layer * (NODE_H + GAP_Y) }));
  });
  return { nodes, width, height: layers.length * (NODE_H + GAP_Y) + GAP_Y / 2 };
}

/** The API's validation errors by the step they concern (`field` = "steps.<name>"); the rest under "". */
export function errorsByStep(errors: FieldError[]): Map<string, FieldError[]> {
  const out = new Map<string, FieldError[]>();
  for (const e of errors) {
    const step = e.field.startsWith('steps.') ? e.field.slice('steps.'.length) : '';
    out.set(step, [...(out.get(step) ?? []), e]);
  }
  return out;
}

/** The edges a simulated walk took (consecutive steps of its path). */
export function pathEdges(path: string[]): Set<string> {
  const s = new Set<string>();
  for (let i = 1; i < path.length; i++) s.add(`${path[i - 1]}>${path[i]}`);
  return s;
}

export type DiffLine = { op: ' ' | '+' | '-'; text: string };

/** A line diff (longest common subsequence) of two texts. */
export function lineDiff(a: string, b: string): DiffLine[] {
  const x = a.split('\n');
  const y = b.split('\n');
  const m = x.length;
  const n = y.length;
  const lcs: number[][] = Array.from({ length: m + 1 }, () => new Array<number>(n + 1).fill(0));
  for (let i = m - 1; i >= 0; i--) for (let j = n - 1; j >= 0; j--) lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
  const out: DiffLine[] = [];
  let i = 0;
  let j = 0;
  while (i < m && j < n) {
    if (x[i] === y[j]) { out.push({ op: ' ', text: x[i] }); i++; j++; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) out.push({ op: '-', text: x[i++] });
    else out.push({ op: '+', text: y[j++] });
  }
  while (i < m) out.push({ op: '-', text: x[i++] });
  while (j < n) out.push({ op: '+', text: y[j++] });
  return out;
}

/** The text a step speaks (a say step's text, a gather's first spoken prompt). */
export function promptText(step: Step): string {
  if (step.kind === 'say') return String(step.text ?? '');
  const p = step.prompt as Record<string, unknown> | Record<string, unknown>[] | undefined;
  const first = Array.isArray(p) ? p[0] : p;
  return first && first.kind === 'say' ? String(first.text ?? '') : '';
}

/** The step with its spoken prompt replaced (a gather's prompt is a say item). */
export function withPrompt(step: Step, text: string): Step {
  if (step.kind === 'say') return { ...step, text };
  if (step.kind !== 'gather') return step;
  const rest = { ...step };
  if (!text) delete rest.prompt;
  else rest.prompt = { kind: 'say', text };
  return rest;
}

/** A new flow: a two-level menu to start from. */
export function starterFlow(): Flow {
  return {
    name: 'Main menu',
    start: 'menu',
    steps: {
      menu: { kind: 'gather', num_digits: 1, prompt: { kind: 'say', text: 'For sales press 1, for support press 2.' }, branches: { '1': 'sales' } },
      sales: { kind: 'say', text: 'Connecting you to sales.', next: 'bye' },
      bye: { kind: 'hangup' },
    },
  };
}

/** A step name not yet in the flow ("step", "step2", ...). */
export function freshName(flow: Flow, base = 'step'): string {
  if (!flow.steps[base]) return base;
  for (let i = 2; ; i++) if (!flow.steps[`${base}${i}`]) return `${base}${i}`;
}

/** JSON with object keys sorted (Postgres stores a flow's keys in its own order: a diff must not see that). */
export function stableJson(v: unknown): string {
  const sort = (x: unknown): unknown => Array.isArray(x) ? x.map(sort)
    : x && typeof x === 'object' ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, sort((x as Record<string, unknown>)[k])])) : x;
  return JSON.stringify(sort(v), null, 2);
}

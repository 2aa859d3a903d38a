// The curl and SDK code for a call body, as the docs and SDK READMEs write them.

/** `curl` creating this call. */
export function curlSnippet(origin: string, body: Record<string, unknown>): string {
  const json = JSON.stringify(body).replace(/'/g, "'\\''");
  return `curl -X POST ${origin}/v1/voice/calls \\\n  -H "Authorization: Bearer $CANARY_API_KEY" -H "Content-Type: application/json" \\\n  -d '${json}'`;
}

function py(v: unknown, indent = ''): string {
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  if (typeof v === 'number') return String(v);
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map((x) => py(x, indent)).join(', ')}]`;
  const entries = Object.entries(v as Record<string, unknown>).map(([k, x]) => `${JSON.stringify(k)}: ${py(x, indent)}`);
  return `{${entries.join(', ')}}`;
}

/** The Python SDK's `calls.create` for this call (`from` is `from_` in Python). */
export function pythonSnippet(origin: string, body: Record<string, unknown>): string {
  const args = Object.entries(body).map(([k, v]) => `    ${k === 'from' ? 'from_' : k}=${py(v)},`);
  return ['from canary import Canary', '', `canary = Canary(base_url="${origin}")  # key: CANARY_API_KEY`,
    'call = canary.voice.calls.create(', ...args, ')', 'print(call.id, call.status)'].join('\n');
}

function js(v: unknown): string {
  if (v && typeof v === 'object' && !Array.isArray(v)) {
    const entries = Object.entries(v as Record<string, unknown>)
      .map(([k, x]) => `${/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k)}: ${js(x)}`);
    return `{ ${entries.join(', ')} }`;
  }
  if (Array.isArray(v)) return `[${v.map(js).join(', ')}]`;
  return typeof v === 'string' ? `'${v.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'` : String(v);
}

/** The Node SDK's `calls.create` for this call. */
export function nodeSnippet(origin: string, body: Record<string, unknown>): string {
  const args = Object.entries(body).map(([k, v]) => `  ${/^[A-Za-z_$][\w$]*$/.test(k) ? k : `'${k}'`}: ${js(v)},`);
  return ["import Canary from '@canary/node';", '', `const canary = new Canary(process.env.CANARY_API_KEY, { baseURL: '${origin}' });`,
    'const call = await canary.voice.calls.create({', ...args, '});', 'console.log(call.id, call.status);'].join('\n');
}

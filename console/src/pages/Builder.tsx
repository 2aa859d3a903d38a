import { useEffect, useMemo, useRef, useState } from 'react';
import { ApiError, FieldError, api } from '../api';
import { FlowGraph } from '../components/FlowGraph';
import { Flow, Step, errorsByStep, freshName, lineDiff, promptText, stableJson, starterFlow, withPrompt } from '../flow';
import { useApi, useDebounced } from '../hooks';

interface Stored { id: string; version: number; latest_version: number; name: string | null; flow: Flow }
interface Simulation { path: string[]; ended: string; steps: { step: string; kind: string; hears: string[]; input: string | null }[] }
type Input = { press: string } | { say: string };

const KINDS = ['say', 'gather', 'play', 'record', 'pause', 'webhook', 'goto', 'hangup', 'answered_by', 'stream'];

/** The IVR builder: the flow as a graph, a step panel, the API's validation on the nodes, versions, a simulator. */
export function Builder() {
  const [flow, setFlow] = useState<Flow>(starterFlow);
  const [selected, setSelected] = useState<string | null>('menu');
  const [errors, setErrors] = useState<FieldError[]>([]);
  const [stored, setStored] = useState<Stored | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [inputs, setInputs] = useState<Input[]>([]);
  const [sim, setSim] = useState<Simulation | null>(null);
  const list = useApi<{ data: Stored[] }>('/v1/voice/flows');

  const validate = useDebounced(() => {
    api<{ valid: boolean; errors: FieldError[] }>('/v1/voice/flows/validate', { body: flow })
      .then((r) => setErrors(r.errors), (e) => setMessage(e.message));
  }, 250);
  useEffect(validate, [flow, validate]);

  const byStep = useMemo(() => errorsByStep(errors), [errors]);

  async function simulate(next: Input[]) {
    setInputs(next);
    try {
      setSim(await api<Simulation>('/v1/voice/flows/simulate', { body: { flow, inputs: next } }));
    } catch (e) {
      setSim(null);
      setMessage(e instanceof ApiError ? `Cannot simulate: ${e.message}` : String(e));
    }
  }
  // An edited flow invalidates the walk shown: walk it again with the same input.
  useEffect(() => { if (sim) void simulate(inputs); }, [flow]); // eslint-disable-line react-hooks/exhaustive-deps

  async function save() {
    setMessage(null);
    try {
      const out = stored
        ? await api<Stored>(`/v1/voice/flows/${stored.id}`, { method: 'PUT', body: flow })
        : await api<Stored>('/v1/voice/flows', { body: flow });
      setStored(out);
      setMessage(`Saved ${out.id} version ${out.version}.`);
      list.reload();
    } catch (e) {
      if (e instanceof ApiError && e.errors.length) setErrors(e.errors);
      setMessage(e instanceof Error ? `Not saved: ${e.message}` : String(e));
    }
  }

  function load(s: Stored) {
    setStored(s);
    setFlow(s.flow);
    setSelected(s.flow.start);
    setSim(null);
    setInputs([]);
  }

  function updateStep(name: string, step: Step | null, rename?: string) {
    const steps: Record<string, Step> = {};
    for (const [k, v] of Object.entries(flow.steps)) {
      if (k !== name) steps[k] = v;
      else if (step) steps[rename ?? k] = step;
    }
    let start = flow.start;
    if (rename && start === name) start = rename;
    setFlow({ ...flow, start, steps });
    if (rename) setSelected(rename);
    if (!step) setSelected(null);
  }

  function addStep() {
    const name = freshName(flow);
    setFlow({ ...flow, steps: { ...flow.steps, [name]: { kind: 'say', text: 'New step.' } } });
    setSelected(name);
  }

  return (
    <section aria-labelledby="builder-h" className="builder">
      <div className="row wrap">
        <h1 id="builder-h">IVR builder</h1>
        <label className="inline">Flow name
          <input value={flow.name ?? ''} onChange={(e) => setFlow({ ...flow, name: e.target.value })} />
        </label>
        <label className="inline">Open
          <select value={stored?.id ?? ''} onChange={(e) => { const s = list.data?.data.find((x) => x.id === e.target.value); if (s) load(s); else { setStored(null); setFlow(starterFlow()); } }}>
            <option value="">new flow</option>
            {list.data?.data.map((s) => <option key={s.id} value={s.id}>{s.name ?? s.id} (v{s.latest_version})</option>)}
          </select>
        </label>
        <button type="button" onClick={addStep}>Add step</button>
        <button type="button" onClick={save}>Save</button>
        <ImportExport flow={flow} onImport={(f) => { setFlow(f); setSelected(f.start); }} onError={setMessage} />
      </div>
      <p role="status" className="hint" data-testid="builder-status">
        {errors.length === 0 ? 'Valid flow.' : `${errors.length} problem${errors.length > 1 ? 's' : ''}: see the marked steps.`}
        {stored && ` Stored as ${stored.id}, version ${stored.version}.`}
      </p>
      {message && <p role="alert" className="note">{message}</p>}
      {(byStep.get('') ?? []).map((e, i) => <p key={i} className="error">{e.field}: {e.message}</p>)}
      <div className="builder-grid">
        <FlowGraph flow={flow} selected={selected} onSelect={setSelected} errors={byStep} path={sim?.path ?? []} />
        <div className="side">
          {selected && flow.steps[selected] ? (
            <StepPanel key={selected} name={selected} flow={flow} errors={byStep.get(selected) ?? []}
                       onChange={(s, rename) => updateStep(selected, s, rename)}
                       onStart={() => setFlow({ ...flow, start: selected })} />
          ) : <p className="hint">Select a step to edit it.</p>}
          <Simulator inputs={inputs} sim={sim} onRun={simulate} />
          {stored && <Versions stored={stored} current={flow} />}
        </div>
      </div>
    </section>
  );
}

function StepPanel({ name, flow, errors, onChange, onStart }: {
  name: string; flow: Flow; errors: FieldError[]; onChange: (s: Step | null, rename?: string) => void; onStart: () => void;
}) {
  const step = flow.steps[name];
  const [newName, setNewName] = useState(name);
  const [newKey, setNewKey] = useState('');
  const names = Object.keys(flow.steps);
  const branches = (step.branches as Record<string, string> | undefined) ?? {};
  const set = (k: string, v: unknown) => {
    const s = { ...step } as Step;
    if (v === '' || v === undefined) delete s[k];
    else s[k] = v;
    onChange(s);
  };
  const target = (label: string, k: string) => (
    <label>{label}
      <select value={(step[k] as string) ?? ''} onChange={(e) => set(k, e.target.value)}>
        <option value="">(none)</option>
        {names.map((n) => <option key={n}>{n}</option>)}
      </select>
    </label>
  );
  const setBranch = (key: string, to: string | null) => {
    const b = { ...branches };
    if (to === null) delete b[key];
    else b[key] = to;
    set('branches', Object.keys(b).length ? b : undefined);
  };

  return (
    <form className="panel stack" aria-label={`Step ${name}`} onSubmit={(e) => e.preventDefault()}>
      <h2>Step <code>{name}</code>{flow.start === name && <span className="badge">start</span>}</h2>
      {errors.map((e, i) => <p key={i} className="error" role="alert">{e.code}: {e.message}</p>)}
      <label>Name
        <input value={newName} onChange={(e) => setNewName(e.target.value)}
               onBlur={() => { if (newName && newName !== name && !flow.steps[newName]) onChange(step, newName); }} />
      </label>
      <label>Kind
        <select value={step.kind} onChange={(e) => onChange({ kind: e.target.value } as Step)}>
          {KINDS.map((k) => <option key={k}>{k}</option>)}
        </select>
      </label>
      {(step.kind === 'say' || step.kind === 'gather') && (
        <>
          <label htmlFor="step-prompt">Prompt</label>
          <textarea id="step-prompt" rows={3} value={promptText(step)} onChange={(e) => onChange(withPrompt(step, e.target.value))} />
        </>
      )}
      {step.kind === 'play' && <label>Audio URL<input type="url" value={(step.url as string) ?? ''} onChange={(e) => set('url', e.target.value)} /></label>}
      {step.kind === 'gather' && (
        <>
          <label>Number of digits<input type="number" min={1} max={64} value={(step.num_digits as number) ?? ''}
                                        onChange={(e) => set('num_digits', e.target.value ? Number(e.target.value) : undefined)} /></label>
          <fieldset>
            <legend>Branches</legend>
            {Object.entries(branches).map(([k, v]) => (
              <div className="branch" key={k}>
                <span className="key" aria-hidden="true">{k}</span>
                <label>Input “{k}” goes to
                  <select value={v} onChange={(e) => setBranch(k, e.target.value)}>
                    {!names.includes(v) && <option value={v}>{v} (missing)</option>}
                    {names.map((n) => <option key={n}>{n}</option>)}
                  </select>
                </label>
                <button type="button" className="link" onClick={() => setBranch(k, null)} aria-label={`Remove branch ${k}`}>Remove</button>
              </div>
            ))}
            <div className="branch">
              <label>New branch input<input value={newKey} onChange={(e) => setNewKey(e.target.value)} placeholder="2 or billing" /></label>
              <button type="button" onClick={() => { if (newKey.trim()) { setBranch(newKey.trim(), name); setNewKey(''); } }}>Add branch</button>
            </div>
          </fieldset>
          {target('Default (no match)', 'default')}
          {target('On timeout', 'on_timeout')}
        </>
      )}
      {step.kind === 'goto' ? target('Go to', 'step') : !['gather', 'hangup', 'answered_by'].includes(step.kind) && target('Next', 'next')}
      <div className="row wrap">
        {flow.start !== name && <button type="button" onClick={onStart}>Make start</button>}
        <button type="button" className="danger" onClick={() => onChange(null)}>Delete step</button>
      </div>
      <details><summary>JSON</summary><pre>{JSON.stringify(step, null, 2)}</pre></details>
    </form>
  );
}

function Simulator({ inputs, sim, onRun }: { inputs: Input[]; sim: Simulation | null; onRun: (i: Input[]) => void }) {
  const [speech, setSpeech] = useState('');
  const keys = ['1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '0', '#'];
  return (
    <section className="panel" aria-labelledby="sim-h">
      <h2 id="sim-h">Simulator</h2>
      <div className="keypad" role="group" aria-label="Keypad">
        {keys.map((k) => <button key={k} type="button" onClick={() => onRun([...inputs, { press: k }])} aria-label={`Press ${k}`}>{k}</button>)}
      </div>
      <form className="row" onSubmit={(e) => { e.preventDefault(); if (speech.trim()) { onRun([...inputs, { say: speech.trim() }]); setSpeech(''); } }}>
        <label>Say<input value={speech} onChange={(e) => setSpeech(e.target.value)} placeholder="billing please" /></label>
        <button type="submit">Say it</button>
      </form>
      <div className="row">
        <button type="button" onClick={() => onRun(inputs)}>Run</button>
        <button type="button" className="link" onClick={() => onRun([])}>Reset</button>
        <span>Input: {inputs.length ? inputs.map((i) => ('press' in i ? i.press : `“${i.say}”`)).join(', ') : 'none'}</span>
      </div>
      {sim && (
        <>
          <p data-testid="sim-path">Path: {sim.path.join(' → ')}</p>
          <p className="hint">Ended: {sim.ended}</p>
          <ol className="sim-steps">
            {sim.steps.map((s, i) => <li key={i}><code>{s.step}</code> {s.hears.join('; ')}{s.input && <em> ← {s.input}</em>}</li>)}
          </ol>
        </>
      )}
    </section>
  );
}

function Versions({ stored, current }: { stored: Stored; current: Flow }) {
  const versions = useApi<{ data: (number | { version: number })[] }>(`/v1/voice/flows/${stored.id}/versions`);
  const [a, setA] = useState<number>(1);
  const [old, setOld] = useState<Flow | null>(null);
  useEffect(() => { void versions.reload(); }, [stored.version]); // eslint-disable-line react-hooks/exhaustive-deps
  useEffect(() => {
    api<Stored>(`/v1/voice/flows/${stored.id}?version=${a}`).then((s) => setOld(s.flow), () => setOld(null));
  }, [a, stored.id, stored.version]);
  const numbers = (versions.data?.data ?? []).map((v) => (typeof v === 'number' ? v : v.version));
  const diff = old ? lineDiff(stableJson(old), stableJson(current)) : [];
  return (
    <section className="panel" aria-labelledby="ver-h">
      <h2 id="ver-h">Versions</h2>
      <label>Compare version
        <select value={a} onChange={(e) => setA(Number(e.target.value))}>
          {numbers.map((n) => <option key={n} value={n}>v{n}</option>)}
        </select> with the flow being edited
      </label>
      <pre className="diff" aria-label="Diff">
        {diff.filter((d, i) => d.op !== ' ' || diff.slice(Math.max(0, i - 2), i + 3).some((x) => x.op !== ' ')).map((d, i) => (
          <div key={i} className={d.op === '+' ? 'add' : d.op === '-' ? 'del' : ''}>{d.op} {d.text}</div>
        ))}
        {old && diff.every((d) => d.op === ' ') && 'No changes.'}
      </pre>
    </section>
  );
}

function ImportExport({ flow, onImport, onError }: { flow: Flow; onImport: (f: Flow) => void; onError: (m: string) => void }) {
  const file = useRef<HTMLInputElement>(null);
  const exportJson = () => {
    const url = URL.createObjectURL(new Blob([JSON.stringify(flow, null, 2)], { type: 'application/json' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = `${(flow.name || 'flow').replace(/[^\w-]+/g, '_')}.json`;
    a.click();
    URL.revokeObjectURL(url);
  };
  return (
    <>
      <button type="button" onClick={exportJson}>Export JSON</button>
      <label className="button">Import JSON
        <input ref={file} type="file" accept="application/json,.json" className="visually-hidden" onChange={async (e) => {
          const f = e.target.files?.[0];
          if (!f) return;
          try {
            const doc = JSON.parse(await f.text());
            if (!doc || typeof doc !== 'object' || typeof doc.steps !== 'object') throw new Error('not a flow: it has no steps');
            onImport(doc as Flow);
          } catch (err) {
            onError(`Import failed: ${err instanceof Error ? err.message : String(err)}`);
          }
          if (file.current) file.current.value = '';
        }} />
      </label>
    </>
  );
}

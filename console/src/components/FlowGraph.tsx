import type { FieldError } from '../api';
import { Flow, NODE_H, NODE_W, edges, layout, pathEdges, promptText } from '../flow';

interface Props {
  flow: Flow;
  selected: string | null;
  onSelect: (name: string) => void;
  errors: Map<string, FieldError[]>;
  path: string[];
}

/** The flow drawn as boxes (steps) and arrows (branches); a node is a button (Tab, Enter). */
export function FlowGraph({ flow, selected, onSelect, errors, path }: Props) {
  const { nodes, width, height } = layout(flow);
  const at = new Map(nodes.map((n) => [n.name, n]));
  const walked = pathEdges(path);
  const visited = new Set(path);
  return (
    <div className="graph" role="group" aria-label="Flow graph">
      <svg viewBox={`0 0 ${width} ${height}`} width={width} height={height} role="img" aria-label={`Flow with ${nodes.length} steps`}>
        <defs>
          <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="10" markerHeight="10" markerUnits="userSpaceOnUse" orient="auto-start-reverse">
            <path d="M0,0 L10,5 L0,10 z" fill="currentColor" />
          </marker>
        </defs>
        {edges(flow).map((e, i) => {
          const a = at.get(e.from);
          const b = at.get(e.to);
          if (!a || !b) return null;
          const x1 = a.x + NODE_W / 2;
          const y1 = a.y + NODE_H;
          const x2 = b.x + NODE_W / 2;
          const back = b.layer <= a.layer; // an edge back up (a loop): around the side
          const y2 = back ? b.y + NODE_H / 2 : b.y;
          const d = back
            ? `M${x1},${y1} C${x1 + NODE_W},${y1 + 40} ${b.x + NODE_W + 60},${y2} ${b.x + NODE_W},${y2}`
            : `M${x1},${y1} C${x1},${(y1 + y2) / 2} ${x2},${(y1 + y2) / 2} ${x2},${y2}`;
          const on = walked.has(`${e.from}>${e.to}`);
          return (
            <g key={i} className={`edge${on ? ' walked' : ''}`} data-edge={`${e.from}>${e.to}`}>
              <path d={d} markerEnd="url(#arrow)" />
              {e.label && <text x={(x1 + x2) / 2 + 6} y={(y1 + y2) / 2}>{e.label}</text>}
            </g>
          );
        })}
        {nodes.map((n) => {
          const errs = errors.get(n.name) ?? [];
          const step = flow.steps[n.name];
          const cls = ['node', selected === n.name && 'selected', errs.length && 'invalid', visited.has(n.name) && 'walked'].filter(Boolean).join(' ');
          return (
            <g key={n.name} className={cls} transform={`translate(${n.x},${n.y})`} tabIndex={0} role="button"
               data-step={n.name} aria-pressed={selected === n.name}
               aria-label={`Step ${n.name}, ${step.kind}${flow.start === n.name ? ', start' : ''}${errs.length ? `, ${errs.length} error: ${errs[0].message}` : ''}`}
               onClick={() => onSelect(n.name)}
               onKeyDown={(e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); onSelect(n.name); } }}>
              <rect width={NODE_W} height={NODE_H} rx={8} />
              <text x={10} y={20} className="name">{n.name}{flow.start === n.name ? ' ▶' : ''}</text>
              <text x={10} y={38} className="kind">{step.kind}</text>
              <text x={10} y={55} className="prompt">{clip(promptText(step), 24)}</text>
              {errs.length > 0 && <title>{errs.map((e) => e.message).join('\n')}</title>}
              {errs.length > 0 && <text x={NODE_W - 18} y={20} className="mark" data-testid="node-error">!</text>}
            </g>
          );
        })}
      </svg>
      {[...errors.entries()].filter(([k]) => k && at.has(k)).map(([k, errs]) => (
        <p key={k} className="error node-error" data-error-step={k}>
          <button type="button" className="link" onClick={() => onSelect(k)}>{k}</button>: {errs.map((e) => e.message).join('; ')}
        </p>
      ))}
    </div>
  );
}

function clip(s: string, n: number): string {
  return s.length > n ? `${s.slice(0, n - 1)}…` : s;
}

// Build dist/esm (ES modules) and dist/cjs (CommonJS) with tsc, both with .d.ts types.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const run = (project) => execFileSync(process.execPath, [tsc, '-p', join(root, project)], { stdio: 'inherit' });

rmSync(join(root, 'dist'), { recursive: true, force: true });
run('tsconfig.json');
run('tsconfig.cjs.json');
mkdirSync(join(root, 'dist/cjs'), { recursive: true });
writeFileSync(join(root, 'dist/cjs/package.json'), JSON.stringify({ type: 'commonjs' }, null, 2) + '\n');
// `const Canary = require('@canary/node')` is the client class; every named export
// (`require('@canary/node').CanaryError`, `.default`, ...) hangs off it too.
writeFileSync(
  join(root, 'dist/cjs/index.cjs'),
  `'use strict';
const mod = require('./index.js');
const Canary = mod.default;
for (const key of Object.keys(mod)) {
  if (!(key in Canary) || key === 'default') Object.defineProperty(Canary, key, { enumerable: true, get: () => mod[key] });
}
module.exports = Canary;
`,
);
writeFileSync(
  join(root, 'dist/cjs/index.d.cts'),
  `import * as mod from './index.js';
declare const Canary: typeof mod.Canary & Omit<typeof mod, 'prototype'>;
declare namespace Canary {
  export type Call = mod.Call;
  export type CallCreateParams = mod.CallCreateParams;
  export type CallListParams = mod.CallListParams;
  export type CallEvent = mod.CallEvent;
  export type Recording = mod.Recording;
  export type Transcription = mod.Transcription;
  export type Voice = mod.Voice;
  export type PhoneNumber = mod.PhoneNumber;
  export type Flow = mod.Flow;
  export type RecordingRef = mod.RecordingRef;
  export type GatherResult = mod.GatherResult;
  export type WebhookDelivery = mod.WebhookDelivery;
  export type SandboxCallee = mod.SandboxCallee;
  export type Trunk = mod.Trunk;
  export type TtsParams = mod.TtsParams;
  export type GatherParams = mod.GatherParams;
  export type RequestOptions = mod.RequestOptions;
  export type ClientOptions = mod.ClientOptions;
}
export = Canary;
`,
);
console.log('built dist/esm and dist/cjs');

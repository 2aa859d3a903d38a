// The published .d.ts types accept the docs snippet and reject wrong calls.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
let tsc = null;
try {
  tsc = require.resolve('typescript/bin/tsc');
} catch {
  /* dev dependency not installed */
}

test('TypeScript types', { skip: tsc ? false : 'typescript is not installed (npm install in sdk/node)' }, () => {
  const fixture = fileURLToPath(new URL('./fixtures/usage.ts', import.meta.url));
  try {
    execFileSync(process.execPath, [tsc, '--noEmit', '--strict', '--skipLibCheck', '--target', 'es2022',
      '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', fixture], { encoding: 'utf8' });
  } catch (err) {
    assert.fail(`tsc rejected the fixture:\n${err.stdout}${err.stderr}`);
  }
});

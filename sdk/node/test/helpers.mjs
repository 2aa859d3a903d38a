// A tiny real HTTP server that answers from a script, for retry/error tests.
import http from 'node:http';

export async function scriptedServer() {
  const script = [];
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      requests.push({ method: req.method, path: req.url, headers: req.headers, body: raw ? JSON.parse(raw) : null, at: performance.now() });
      const reply = script.shift() ?? { status: 404, body: { error: { code: 'not_found', message: 'unscripted', field: null } } };
      if (reply.delay) await new Promise((r) => setTimeout(r, reply.delay));
      if (reply.drop) {
        req.socket.destroy();
        return;
      }
      const payload = reply.raw ?? (reply.body === undefined ? '' : JSON.stringify(reply.body));
      const headers = { ...(reply.body !== undefined && !reply.raw ? { 'content-type': 'application/json' } : {}), ...(reply.headers ?? {}) };
      res.writeHead(reply.status ?? 200, headers);
      res.end(payload);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    reply(...replies) {
      script.push(...replies);
      return this;
    },
    close: () => new Promise((r) => { server.closeAllConnections?.(); server.close(r); }),
  };
}

export const CALL = {
  id: 'call_abc123xyz', to: '+15551234567', from: '+15559876543', status: 'queued',
  direction: 'outbound', created_at: '2024-01-01T12:00:00Z',
};
export const ARGS = { to: '+15551234567', from: '+15559876543', tts: { text: 'Hello from Canary!' } };
export const UNAVAILABLE = { error: { code: 'kafka_unavailable', message: 'retry later', field: null } };

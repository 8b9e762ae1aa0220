// Admin HTTP: /metrics (Prometheus), /healthz (the process answers), /readyz
// (listeners up and the audit store writable; warnings such as a policy reload that
// was refused). Bound to loopback by default.

import http from 'node:http';
import type net from 'node:net';
import type { Metrics } from './metrics.js';

/** What /readyz reports on. */
export interface Readiness {
  /** Problems that make dbward not ready; empty when ready. */
  problems(): string[];
  /** Conditions an operator must see that do not stop dbward serving (a rejected policy reload). */
  warnings(): string[];
}

/** Handles a path the server itself does not; resolves false when the path is not its own. */
export type AdminRoute = (req: http.IncomingMessage, res: http.ServerResponse, path: string) => Promise<boolean>;

/** Starts the admin server; resolves to it and its bound port. */
export async function startAdminServer(
  host: string, port: number, metrics: Metrics, readiness: Readiness, route: AdminRoute | null = null,
): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer((req, res) => {
    void handle(req, res, metrics, readiness, route).catch(() => {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(); });
  });
  return { server, port: (server.address() as net.AddressInfo).port };
}

async function handle(req: http.IncomingMessage, res: http.ServerResponse, metrics: Metrics, readiness: Readiness, route: AdminRoute | null): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  const own = path === '/metrics' || path === '/healthz' || path === '/readyz';
  if (own && req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return;
  }
  if (path === '/metrics') {
    const body = await metrics.registry.metrics();
    res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body);
  } else if (path === '/healthz') {
    json(res, 200, { status: 'ok' });
  } else if (path === '/readyz') {
    const problems = readiness.problems();
    json(res, problems.length === 0 ? 200 : 503, { status: problems.length === 0 ? 'ready' : 'not_ready', problems, warnings: readiness.warnings() });
  } else if (!(route && await route(req, res, path ?? '/'))) {
    json(res, 404, { error: 'not found' });
  }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

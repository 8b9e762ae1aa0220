// `dbward approvals list|show|approve|deny`: the admin API's approvals, as the
// approver. The caller is identified by an OIDC access token: --token, or
// DBWARD_TOKEN, or the login `dbward login` cached. Exit codes: 0 ok, 1 failure
// (refused, unreachable), 2 usage error.

import { parseArgs } from 'node:util';
import { shownStatement } from '../approvals/rules.js';
import type { ApprovalRequest } from '../approvals/types.js';

const USAGE = `Usage: dbward approvals list [--status pending,approved,...] [--json]
       dbward approvals show ID
       dbward approvals approve ID [--reason TEXT]
       dbward approvals deny ID --reason TEXT
Options: --url URL (dbward's admin server; default DBWARD_ADMIN_URL or http://127.0.0.1:6480)
         --token TOKEN (default DBWARD_TOKEN, else the cached login of dbward login)
`;

class UsageError extends Error {}

/** Runs an approvals subcommand; resolves to the exit code. */
export async function approvalsCommand(argv: string[]): Promise<number> {
  try {
    const { values: v, positionals } = parseArgs({
      args: argv, allowPositionals: true, strict: true,
      options: {
        url: { type: 'string' }, token: { type: 'string' }, reason: { type: 'string' }, status: { type: 'string' },
        json: { type: 'boolean' }, cache: { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    });
    const [sub, id, ...extra] = positionals;
    if (v.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    if (!sub || extra.length > 0) throw new UsageError(sub ? `unexpected arguments: ${extra.join(' ')}` : 'missing subcommand');
    const base = (v.url ?? process.env.DBWARD_ADMIN_URL ?? 'http://127.0.0.1:6480').replace(/\/+$/, '');
    const token = v.token ?? process.env.DBWARD_TOKEN ?? await (await import('./auth.js')).cachedAccessToken(v.cache);
    const call = (method: string, path: string, body?: unknown) => request(base, token, method, path, body);
    if (sub === 'list') {
      if (id) throw new UsageError('list takes no id');
      const q = new URLSearchParams({ status: v.status ?? 'pending' });
      const { requests } = await call('GET', `/approvals?${q}`) as { requests: ApprovalRequest[] };
      if (v.json) for (const r of requests) process.stdout.write(`${JSON.stringify(r)}\n`);
      else process.stdout.write(table(requests));
      return 0;
    }
    if (!id) throw new UsageError(`${sub} needs a request id`);
    if (sub === 'show') {
      const { request: r } = await call('GET', `/approvals/${encodeURIComponent(id)}`) as { request: ApprovalRequest };
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return 0;
    }
    if (sub !== 'approve' && sub !== 'deny') throw new UsageError(`unknown subcommand "${sub}"`);
    if (sub === 'deny' && !v.reason) throw new UsageError('deny needs --reason: the requester sees it');
    const { request: r } = await call('POST', `/approvals/${encodeURIComponent(id)}/${sub}`, { reason: v.reason ?? null }) as { request: ApprovalRequest };
    const approvals = r.decisions.filter((d) => d.decision === 'approve').length;
    process.stdout.write(`${r.id}: ${r.status}${r.status === 'pending' ? ` (${approvals} of ${r.required} approvals)` : ''}\n`);
    return 0;
  } catch (err) {
    const usage = err instanceof UsageError || String((err as { code?: unknown }).code ?? '').startsWith('ERR_PARSE_ARGS');
    process.stderr.write(`dbward approvals: ${(err as Error).message}\n${usage ? USAGE : ''}`);
    return usage ? 2 : 1;
  }
}

async function request(base: string, token: string, method: string, path: string, body?: unknown): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'x-dbward-client': 'cli', ...(body !== undefined && { 'content-type': 'application/json' }) },
      ...(body !== undefined && { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(15_000),
    });
  } catch (err) {
    throw new Error(`cannot reach dbward at ${base} (${(err as Error).message})`);
  }
  const text = await res.text();
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    // An answer that is not JSON is reported by status below.
  }
  if (!res.ok) throw new Error((parsed as { error?: string } | null)?.error ?? `dbward answered HTTP ${res.status}`);
  return parsed;
}

function table(rows: ApprovalRequest[]): string {
  if (rows.length === 0) return 'no requests\n';
  const lines = rows.map((r) => [
    r.id, r.status, r.requester.user, r.target.name, r.rules.join(','), `${r.decisions.filter((d) => d.decision === 'approve').length}/${r.required}`,
    r.expiresAt.slice(0, 19), shownStatement(r).replace(/\s+/g, ' ').slice(0, 60),
  ]);
  const head = ['ID', 'STATUS', 'REQUESTER', 'TARGET', 'RULES', 'OK', 'OPEN UNTIL', 'STATEMENT'];
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  return [head, ...lines].map((l) => l.map((c, i) => (i === l.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}

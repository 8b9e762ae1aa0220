// Audit search over HTTP, for the admin server (which checks the caller first):
//   GET /audit/search?user=..&table=..&since=1h&format=json
//   GET /audit/sessions/<id>
// Both stream JSON lines (application/x-ndjson), one row per line, as
// `dbward audit search --format json` prints them. Query parameters are the
// CLI's filter names (search.ts FILTER_PARAMS; `env` for `environment` too).

import type http from 'node:http';
import { filterFrom, search, SearchFilterError, type AuditRow, type EventSource, type SearchFilter } from '../audit/search.js';

/** What the audit API reads and how much it returns. */
export interface AuditApiOptions {
  /** The trail to search; called per request, so a reloaded config applies. */
  source: () => EventSource;
  /** Rows returned when the request names no limit (default 1000). */
  defaultLimit?: number;
  /** The largest limit a request may ask for (default 100000): one request must not stream the whole trail. */
  maxLimit?: number;
}

/** A request handler for /audit/search and /audit/sessions/:id; answers 404 for other paths. */
export function auditSearchHandler(opts: AuditApiOptions): (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> {
  const defaultLimit = opts.defaultLimit ?? 1000;
  const maxLimit = opts.maxLimit ?? 100_000;
  return async (req, res) => {
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end();
      return;
    }
    const url = new URL(req.url ?? '/', 'http://localhost');
    const q = url.searchParams;
    let filter: SearchFilter;
    try {
      const format = q.get('format') ?? 'json';
      if (format !== 'json') throw new SearchFilterError(`format must be json (got "${format}")`);
      filter = filterFrom((k) => q.get(k) ?? (k === 'environment' ? q.get('env') : null) ?? undefined);
      if ((filter.limit ?? 0) > maxLimit) throw new SearchFilterError(`limit must be at most ${maxLimit}`);
      filter.limit ??= defaultLimit;
    } catch (err) {
      if (!(err instanceof SearchFilterError)) throw err;
      json(res, 400, { error: err.message });
      return;
    }
    let rows: AsyncGenerator<AuditRow>;
    const session = /^\/audit\/sessions\/([^/]+)$/.exec(url.pathname);
    if (url.pathname === '/audit/search') {
      rows = search(opts.source(), filter);
    } else if (session) {
      let id: string;
      try {
        id = decodeURIComponent(session[1]!);
      } catch {
        json(res, 400, { error: 'malformed session id' });
        return;
      }
      // The timeline shows every event type unless the request narrows it.
      rows = search(opts.source(), { ...filter, session: id, types: filter.types ?? 'all' });
    } else {
      json(res, 404, { error: 'not found' });
      return;
    }
    await stream(rows, res);
  };
}

/** Writes rows as JSON lines, respecting backpressure; stops reading when the client goes away. */
async function stream(rows: AsyncGenerator<AuditRow>, res: http.ServerResponse): Promise<void> {
  let gone = false;
  const onClose = (): void => { gone = true; };
  res.once('close', onClose);
  try {
    let first = await rows.next();
    res.writeHead(200, { 'content-type': 'application/x-ndjson', 'cache-control': 'no-store' });
    for (; !first.done && !gone; first = await rows.next()) {
      if (!res.write(`${JSON.stringify(first.value)}\n`)) {
        await new Promise<void>((resolve) => {
          const go = (): void => { res.off('drain', go); res.off('close', go); resolve(); };
          res.on('drain', go);
          res.on('close', go);
        });
      }
    }
    res.end();
  } catch (err) {
    // Before the first row the status can still say so; after it, a last line does.
    const message = `cannot read the audit trail: ${(err as Error).message}`;
    if (!res.headersSent) json(res, 500, { error: message });
    else res.end(`${JSON.stringify({ error: message })}\n`);
  } finally {
    res.off('close', onClose);
    await rows.return(undefined);
  }
}

function json(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

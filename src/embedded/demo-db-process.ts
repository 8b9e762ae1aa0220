// Runs the demo database in a child process. PGlite executes each query
// synchronously on its thread, so in dbward's own process one slow demo query
// would stall every session, the admin server and the audit flush.

import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { DemoDatabase } from './demo-db.js';

/** Starts the demo database in a child process; resolves once it accepts connections. */
export function startDemoDatabaseProcess(timeoutMs = 60_000): Promise<DemoDatabase> {
  // Under tsx (tests, bench) this module is .ts and so is its sibling.
  const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
  const child = fork(fileURLToPath(new URL(`./demo-db-child${ext}`, import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('the demo database did not start in time')); }, timeoutMs);
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`the demo database exited during startup (code ${code})`)); });
    child.on('message', (m: { type: string; message?: string; host?: string; port?: number; database?: string; user?: string }) => {
      if (m.type === 'fatal') {
        process.stderr.write(`dbward dev: the demo database failed: ${m.message}\n`);
        return;
      }
      if (m.type !== 'ready') return;
      clearTimeout(timer);
      child.removeAllListeners('exit');
      resolve({
        host: m.host!, port: m.port!, database: m.database!, user: m.user!,
        stop: () => new Promise<void>((done) => {
          if (child.exitCode !== null) return done();
          child.once('exit', () => done());
          child.send('stop');
          setTimeout(() => child.kill('SIGKILL'), 5_000).unref();
        }),
      });
    });
  });
}

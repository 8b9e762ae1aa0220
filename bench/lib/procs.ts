// Launching the relay and dbward as child processes and waiting for them to be usable.
import { spawn, type ChildProcess } from 'node:child_process';
import { pinned } from './pin.js';
import { createWriteStream, existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { stopChild, track } from './children.js';
import { psql, type Target } from './pgbench.js';

/** Ask the kernel for a currently free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = addr !== null && typeof addr === 'object' ? addr.port : 0;
      s.close(() => (port ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

/** Spawn `node args...` from `cwd`, stdout/stderr to `logFile`; the child is tracked for cleanup. */
function spawnNode(args: string[], cwd: string, logFile: string): ChildProcess {
  const log = createWriteStream(logFile);
  const [cmd, argv] = pinned('proxy', process.execPath, args);
  const child = track(spawn(cmd, argv, { cwd, stdio: ['ignore', 'pipe', 'pipe'] }));
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  return child;
}

function logTail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-30).join('\n');
  } catch {
    return '(no log)';
  }
}

/** Start bench/relay.ts in its own process (like dbward) so neither leg shares the harness's event loop. */
export async function startRelayProcess(root: string, upstream: string, logFile: string): Promise<{ port: number; child: ChildProcess }> {
  const child = spawnNode(['--import', 'tsx', 'bench/relay.ts', '--upstream', upstream, '--port', '0'], root, logFile);
  const port = await new Promise<number>((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const m = /^(\d+)\s*$/m.exec(buf);
      if (m?.[1] !== undefined) {
        child.stdout?.off('data', onData);
        resolve(Number(m[1]));
      }
    };
    child.stdout?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`relay exited ${code} before listening:\n${logTail(logFile)}`)));
  });
  return { port, child };
}

/** The command line that runs the dbward CLI: the compiled build if present (no transpile cost), else tsx. */
export function dbwardCommand(root: string): string[] {
  if (existsSync(path.join(root, 'dist/cli/main.js'))) return ['dist/cli/main.js'];
  if (existsSync(path.join(root, 'src/cli/main.ts'))) return ['--import', 'tsx', 'src/cli/main.ts'];
  throw new Error('dbward CLI not found (no dist/cli/main.js or src/cli/main.ts); try --endpoints direct,relay');
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) newest = Math.max(newest, statSync(path.join(e.parentPath, e.name)).mtimeMs);
  }
  return newest;
}

/** A warning if dist/ is older than src/: the bench would silently measure yesterday's code. */
export function staleBuildWarning(root: string): string | null {
  const built = path.join(root, 'dist/cli/main.js');
  if (!existsSync(built) || !existsSync(path.join(root, 'src'))) return null;
  const age = newestMtime(path.join(root, 'src')) - statSync(built).mtimeMs;
  return age > 0 ? `WARNING: src/ is newer than dist/cli/main.js; run \`npm run build\` first to measure current code` : null;
}

/** Start `dbward start -c config` and wait until a real query succeeds through `t` (up to `timeoutMs`). */
export async function startDbward(root: string, config: string, t: Target, logFile: string, timeoutMs = 20_000): Promise<ChildProcess> {
  const child = spawnNode([...dbwardCommand(root), 'start', '-c', config], root, logFile);
  const deadline = Date.now() + timeoutMs;
  let lastErr = '';
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`dbward exited (${child.exitCode ?? child.signalCode}) during startup:\n${logTail(logFile)}`);
    }
    try {
      if ((await psql(t, 'select 1')) === '1') return child;
    } catch (err) {
      lastErr = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  await stopChild(child);
  throw new Error(`dbward did not accept queries within ${timeoutMs} ms; last error: ${lastErr}\n${logTail(logFile)}`);
}

// `dbward dev` (what `npm start` runs) as a child process on free ports, with its
// standard error kept for the ready text it prints.

import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A running `dbward dev`: its process, its state directory, and what it printed so far. */
export interface DevProcess {
  child: ChildProcess;
  stateDir: string;
  stderr(): string;
}

/** Starts `dbward dev` with a fresh state directory named after `prefix`. */
export function startDev(prefix: string): DevProcess {
  const root = path.resolve(import.meta.dirname, '../..');
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'dev', '--port', '0', '--admin-port', '0', '--idp-port', '0', '--state-dir', stateDir],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (b) => (stderr += b));
  child.stdout!.resume();
  return { child, stateDir, stderr: () => stderr };
}

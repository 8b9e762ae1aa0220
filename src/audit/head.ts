// Chain head export and the chain key. The head (seq and mac of the newest line
// on disk) is written somewhere the trail's editor cannot reach, so that cutting
// events off the end of the trail, which leaves a chain that verifies, is caught
// by `dbward audit verify --head`.

import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { keyFrom, type ChainHead } from './chain.js';

/** An exported head as stored in a head file. */
export interface HeadRecord extends ChainHead {
  node: string;
  time: string;
}

/** Writes `head` to `file` atomically (a reader never sees half a file). */
export function writeHeadFile(file: string, node: string, head: ChainHead): void {
  const record: HeadRecord = { node, seq: head.seq, mac: head.mac, time: new Date().toISOString() };
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify(record)}\n`, { mode: 0o640 });
  fs.renameSync(tmp, file);
}

/** Reads a head file written by writeHeadFile. */
export function readHeadFile(file: string): HeadRecord {
  const data = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<HeadRecord>;
  if (typeof data.seq !== 'number' || typeof data.mac !== 'string' || !/^[0-9a-f]{64}$/.test(data.mac)) {
    throw new Error(`${file} is not a dbward chain head (expected {"seq":N,"mac":"<64 hex>"})`);
  }
  return { node: data.node ?? '', seq: data.seq, mac: data.mac, time: data.time ?? '' };
}

/** Exports a sink's head every `intervalMs` when it moved, and once more on stop. */
export class HeadExporter {
  private last = -1;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly file: string,
    private readonly node: string,
    private readonly head: () => ChainHead,
    intervalMs: number,
    private readonly log: Logger,
  ) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o750 });
    this.timer = setInterval(() => this.export(), intervalMs);
    this.timer.unref();
  }

  /** Writes the head now if it moved since the last export. */
  export(): void {
    const head = this.head();
    if (head.seq === this.last) return;
    try {
      writeHeadFile(this.file, this.node, head);
      this.last = head.seq;
    } catch (err) {
      this.log.error({ err, file: this.file }, 'could not export the audit chain head');
    }
  }

  /** Stops the timer after a final export. */
  stop(): void {
    clearInterval(this.timer);
    this.export();
  }
}

/** The chain key the config points at; a `generate` key file is created (random, 0600) when missing. */
export function loadChainKey(
  ref: { env: string } | { file: string } | { generate: string },
  log: Logger,
  env: NodeJS.ProcessEnv = process.env,
): Buffer {
  if ('generate' in ref && !fs.existsSync(ref.generate)) {
    fs.mkdirSync(path.dirname(ref.generate), { recursive: true, mode: 0o750 });
    // 'wx': never overwrite a key another process created meanwhile.
    fs.writeFileSync(ref.generate, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
    log.warn({ file: ref.generate }, 'created an audit chain key beside the trail; set audit.chain.key to a key kept elsewhere, or the chain only detects accidents');
  }
  return readKey('generate' in ref ? { file: ref.generate } : ref, 'audit.chain.key', 'the audit chain key', env);
}

/** A key of at least 32 bytes from an environment variable or a file; errors name the config `field`. */
export function readKey(ref: { env: string } | { file: string }, field: string, what: string, env: NodeJS.ProcessEnv = process.env): Buffer {
  if ('env' in ref) {
    const value = env[ref.env];
    if (value === undefined || value === '') throw new Error(`${field}: environment variable ${ref.env} is not set`);
    return keyFrom(value, `environment variable ${ref.env}`, what);
  }
  let text: string;
  try {
    text = fs.readFileSync(ref.file, 'utf8');
  } catch (err) {
    throw new Error(`${field}: cannot read ${ref.file} (${(err as NodeJS.ErrnoException).code ?? 'read failed'})`);
  }
  return keyFrom(text, ref.file, what);
}

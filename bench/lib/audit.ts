// Sanity check that dbward actually recorded what went through it.
import { createReadStream, existsSync } from 'node:fs';
import { trailFiles } from '../../src/audit/read.js';

/** Count newline-terminated lines without loading the (possibly multi-GB) file into memory. */
export async function countLines(file: string): Promise<number | null> {
  if (!existsSync(file)) return null;
  let n = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) n++;
  }
  return n;
}

/** Lines in an audit trail: the active file plus those dbward rotated away beside it (a long leg passes rotate_bytes). */
export async function countTrailLines(active: string): Promise<number | null> {
  const files = trailFiles(active);
  if (files.length === 0) return null;
  const counts = await Promise.all(files.map(countLines));
  return counts.reduce<number>((a, c) => a + (c ?? 0), 0);
}

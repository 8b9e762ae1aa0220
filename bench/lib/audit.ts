// Sanity check that dbward actually recorded what went through it.
import { createReadStream, existsSync } from 'node:fs';

/** Count newline-terminated lines without loading the (possibly multi-GB) file into memory. */
export async function countLines(file: string): Promise<number | null> {
  if (!existsSync(file)) return null;
  let n = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    for (let i = chunk.indexOf(10); i !== -1; i = chunk.indexOf(10, i + 1)) n++;
  }
  return n;
}

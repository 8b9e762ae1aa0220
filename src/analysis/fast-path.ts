// The fast-path FunctionCall message names a function by OID and carries no SQL:
// its facts are a call of `oid:N`, which policy must allow explicitly.

import type { Analysis } from './facts.js';

/** The facts of a protocol-level FunctionCall of the function with this OID. */
export function fastPathAnalysis(oid: number): Analysis {
  return { ok: true, statements: [{ text: '', kinds: ['call'], reads: [], writes: [], columns: [], functions: [`oid:${oid}`], flags: [] }] };
}

// Statement analysis: the engine-neutral facts and the PostgreSQL analyzer.

export type * from './facts.js';
export { analyzePg, loadPgParser } from './pg/analyze.js';
export { fingerprintPg, normalizePg } from './pg/normalize.js';
export { scrubSecrets } from './secrets.js';

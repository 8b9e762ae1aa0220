// analyzePg before loadPgParser: a programming error, reported as such. Its own file,
// so that no other test has loaded the parser in this module graph.

import { expect, it } from 'vitest';
import { analyzePg, loadPgParser } from '../../src/analysis/pg/analyze.js';
import { DEFAULT_CTX } from '../fixtures/pg-statements.js';

it('throws a clear error until the parser is loaded, then analyzes', async () => {
  expect(() => analyzePg('SELECT 1', DEFAULT_CTX)).toThrow(/loadPgParser/);
  await loadPgParser();
  expect(analyzePg('SELECT 1', DEFAULT_CTX)).toMatchObject({ ok: true, statements: [{ kinds: ['select'] }] });
});

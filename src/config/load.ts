// Entry point for reading dbward.yaml: YAML -> schema check -> cross-field checks -> Config.
// Every stage collects all of its problems so one run shows the operator everything to fix.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type YAMLError } from 'yaml';
import { buildConfig, crossFieldProblems, type RawConfig } from './build.js';
import { ConfigError, type ConfigProblem } from './errors.js';
import { Locator } from './locate.js';
import { validateSchema, type SchemaProblem } from './schema.js';
import type { Config } from './types.js';

export { ConfigError, formatProblem, type ConfigProblem } from './errors.js';

/** Read, validate and default the config file at `file`; throws ConfigError listing every problem. */
export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ConfigError([{ file, line: 0, column: 0, field: '', message: `cannot read config file (${reason})` }]);
  }
  return parseConfig(text, file);
}

/** Parse config text as if read from `sourcePath` (used for error positions and relative paths). */
export function parseConfig(text: string, sourcePath: string): Config {
  const lines = new LineCounter();
  // prettyErrors off: we print our own file:line:col, not yaml's multi-line excerpt.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true, merge: true });
  const locate = new Locator(doc, lines);
  const fail = (problems: SchemaProblem[]): ConfigError => {
    const sorted = [...problems].sort((a, b) => a.line - b.line || a.column - b.column);
    return new ConfigError(sorted.map((p): ConfigProblem => ({ file: sourcePath, ...p })));
  };

  if (doc.errors.length > 0) throw fail(doc.errors.map((e) => yamlProblem(e, locate)));

  const top = doc.contents;
  if (top === null || (isScalar(top) && top.value === null)) {
    throw fail([{ line: 1, column: 1, field: '', message: 'config file is empty; expected a mapping with listeners and targets' }]);
  }
  if (!isMap(top)) {
    const kind = isSeq(top) ? 'a list' : 'a single value';
    throw fail([{ ...locate.value([]), field: '', message: `top level must be a mapping of settings, got ${kind}` }]);
  }

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    // Alias bombs ("billion laughs") are refused here rather than expanded.
    throw fail([{ line: 1, column: 1, field: '', message: `cannot expand YAML: ${(err as Error).message}` }]);
  }

  const problems: SchemaProblem[] = [...validateSchema(data, locate), ...crossFieldProblems(data, locate)];
  if (problems.length > 0) throw fail(problems);
  return buildConfig(data as RawConfig, path.resolve(sourcePath));
}

/** A YAML parse error as a positioned problem, in words an operator understands. */
export function yamlProblem(e: YAMLError, locate: Locator): SchemaProblem {
  const at = locate.offset(e.pos[0]);
  let message = e.message;
  if (e.code === 'DUPLICATE_KEY') {
    const key = locate.keyAt(e.pos[0]);
    message = key === undefined ? 'duplicate key' : `duplicate key "${key}"`;
  } else if (e.code === 'MULTIPLE_DOCS') {
    message = 'only one YAML document is allowed (remove the extra ---)';
  }
  return { ...at, field: '', message };
}

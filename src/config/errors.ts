// Errors raised while reading dbward.yaml. Every problem carries a file position so an
// operator can jump straight to it; all problems are reported at once, not just the first.

/** One thing wrong with a config file. line/column are 1-based; 0 means "no position" (e.g. unreadable file). */
export interface ConfigProblem {
  file: string;
  line: number;
  column: number;
  /** Dotted path such as `targets[0].port`; empty for YAML syntax errors. */
  field: string;
  message: string;
}

/** Render a problem as `file:line:col: field: message`, the format editors and terminals link. */
export function formatProblem(p: ConfigProblem): string {
  const where = p.line > 0 ? `${p.file}:${p.line}:${p.column}` : p.file;
  return p.field === '' ? `${where}: ${p.message}` : `${where}: ${p.field}: ${p.message}`;
}

/** The config file is unreadable, malformed or invalid; `problems` lists everything found. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID' as const;
  readonly problems: ConfigProblem[];

  constructor(problems: ConfigProblem[]) {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

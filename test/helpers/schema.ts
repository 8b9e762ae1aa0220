// Walks a shipped JSON Schema the way the docs tests need it: every property by
// its path, so each schema can be checked against its reference page.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The parts of a JSON Schema node the docs tests read. */
export interface SchemaNode {
  type?: string | string[];
  description?: string;
  enum?: string[];
  default?: unknown;
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
  anyOf?: SchemaNode[];
  additionalProperties?: boolean | SchemaNode;
}

const root = fileURLToPath(new URL('../..', import.meta.url));

/** Reads schemas/NAME from the repository. */
export function readSchema(name: string): SchemaNode {
  return JSON.parse(readFileSync(path.join(root, 'schemas', name), 'utf8')) as SchemaNode;
}

/** Every property as [path like `targets[].tls.mode`, its schema], list entries marked `[]`. */
export function schemaProperties(node: SchemaNode, prefix = ''): [string, SchemaNode][] {
  return Object.entries(node.properties ?? {}).flatMap(([key, sub]): [string, SchemaNode][] => {
    const p = prefix === '' ? key : `${prefix}.${key}`;
    const inner = sub.items ?? sub;
    return [[p, sub], ...schemaProperties(inner, sub.items ? `${p}[]` : p)];
  });
}

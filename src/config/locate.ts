// Maps a data path (as ajv reports it) back to a position in the YAML source, so
// schema errors can be reported as file:line:col instead of a JSON pointer.
import { isAlias, isMap, isScalar, isSeq, visit, type Document, type LineCounter, type Node, type Pair } from 'yaml';

export type PathSegment = string | number;

/** Where a problem sits in the source: 1-based line and column. */
export interface Position {
  line: number;
  column: number;
}

/** Split an ajv instancePath ("/targets/0/port") into segments, undoing JSON Pointer escapes. */
export function pointerSegments(pointer: string): PathSegment[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^(0|[1-9]\d*)$/.test(s) ? Number(s) : s));
}

/** Render segments the way an operator reads them: `targets[0].tls.mode`, `labels["a.b/c"]`. */
export function fieldPath(segments: PathSegment[]): string {
  let out = '';
  for (const seg of segments) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) out += out === '' ? seg : `.${seg}`;
    else out += `[${JSON.stringify(seg)}]`;
  }
  return out === '' ? '(root)' : out;
}

/** Finds source positions for data paths within one parsed document. */
export class Locator {
  constructor(
    private readonly doc: Document,
    private readonly lines: LineCounter,
  ) {}

  /** Position of the value at `segments`, or of its nearest existing ancestor. */
  value(segments: PathSegment[]): Position {
    const { node, ancestor } = this.walk(segments);
    return this.pos(node ?? ancestor);
  }

  /** Position of the key `key` inside the mapping at `segments` (for unknown-field errors). */
  key(segments: PathSegment[], key: string): Position {
    const { node, ancestor } = this.walk(segments);
    const pair = node ? this.pairOf(node, key) : undefined;
    return this.pos(pair?.key ?? node ?? ancestor);
  }

  /** The text of the mapping key that starts at `offset` (yaml reports duplicate keys by offset only). */
  keyAt(offset: number): string | undefined {
    let found: string | undefined;
    visit(this.doc, {
      Pair: (_, pair) => {
        if (isScalar(pair.key) && pair.key.range?.[0] === offset) {
          found = String(pair.key.value);
          return visit.BREAK;
        }
        return undefined;
      },
    });
    return found;
  }

  /** Convert a byte offset in the source to a position. */
  offset(offset: number): Position {
    const { line, col } = this.lines.linePos(offset);
    return { line, column: col };
  }

  private pos(node: unknown): Position {
    const range = (node as Node | null)?.range;
    return this.offset(range ? range[0] : 0);
  }

  private walk(segments: PathSegment[]): { node: Node | null; ancestor: Node | null } {
    let node = this.deref(this.doc.contents);
    let ancestor = node;
    for (const seg of segments) {
      if (!node) break;
      ancestor = node;
      if (isSeq(node)) node = this.deref(node.items[Number(seg)]);
      else if (isMap(node)) {
        const pair = this.pairOf(node, String(seg));
        // `key:` with no value parses as a null scalar; if even that is absent, point at the key.
        node = pair ? this.deref(pair.value) ?? this.deref(pair.key) : null;
      } else node = null;
    }
    return { node, ancestor };
  }

  private pairOf(node: Node, key: string): Pair | undefined {
    if (!isMap(node)) return undefined;
    return node.items.find((p) => isScalar(p.key) && String(p.key.value) === key) as Pair | undefined;
  }

  // An aliased value is reported at its anchor, which is where its text was actually written.
  private deref(value: unknown): Node | null {
    if (isAlias(value)) return (value.resolve(this.doc) as Node | undefined) ?? null;
    if (value && typeof value === 'object' && 'range' in value) return value as Node;
    return null;
  }
}

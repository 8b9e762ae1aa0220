// The vocabulary masking shares between policy (which columns, which strategy),
// the catalog (where a result column comes from) and the relay (which bytes to
// rewrite). Kept free of runtime imports.

/** How a masked value is replaced. */
export type MaskStrategyName = 'redact' | 'partial' | 'hash' | 'null' | 'email';

/** Content detectors for columns no rule names. */
export type DetectorName = 'email' | 'card' | 'ssn' | 'phone' | 'iban' | 'jwt' | 'api_key';

/** One strategy with its options, and the rule that chose it (for the audit trail). */
export interface MaskSpec {
  strategy: MaskStrategyName;
  /** partial: characters kept at the start and at the end. */
  keepFirst?: number;
  keepLast?: number;
  /** The masking rule's id. */
  rule: string;
}

/**
 * Masks one non-NULL value given as its UTF-8 text. Returns the masked UTF-8 text,
 * or null for SQL NULL. Never returns a buffer that holds the clear value.
 */
export type Masker = (value: Buffer) => Buffer | null;

/**
 * Writes the masked form of the non-NULL value src[start, end) (its UTF-8 text) at
 * out[at], where there is room for (end - start) + MASK_SLACK bytes; returns where
 * the masked text ends in `out`, or -1 for SQL NULL (nothing written). `out` is never
 * `src`: the masked text never shares memory with the clear value.
 */
export type MaskWriter = (src: Buffer, start: number, end: number, out: Buffer, at: number) => number;

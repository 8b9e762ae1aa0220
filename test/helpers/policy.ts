// Loading policy text in tests: the problems a load reports, one per line.

import { expect } from 'vitest';
import { PolicyError, policyFromTexts } from '../../src/policy/load.js';

/** The problem lines of loading `yaml` as p.yaml; [] when it loads. */
export function policyProblems(yaml: string): string[] {
  try {
    policyFromTexts([{ file: 'p.yaml', text: yaml }]);
  } catch (err) {
    expect(err).toBeInstanceOf(PolicyError);
    expect((err as PolicyError).code).toBe('POLICY_INVALID');
    return (err as PolicyError).message.split('\n');
  }
  return [];
}

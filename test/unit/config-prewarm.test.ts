// targets[].prewarm: off unless set, bounded, and carried into the target's config.
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfig } from '../../src/config/load.js';

const SRC = path.resolve('/etc/dbward/dbward.yaml');
const config = (target: string): string => `listeners:
  - {}
targets:
  - ${target}
identity: { issuer: "https://login.example.com", audience: dbward }
policy: { path: policies }
`;

describe('targets[].prewarm', () => {
  it('is off unless set, and taken as given', () => {
    expect(parseConfig(config('{ name: app, host: db.internal, user: dbward }'), SRC).targets[0]!.prewarm ?? 0).toBe(0);
    expect(parseConfig(config('{ name: app, host: db.internal, user: dbward, prewarm: 2 }'), SRC).targets[0]!.prewarm).toBe(2);
  });

  it('refuses a negative, fractional or unbounded size', () => {
    for (const bad of ['-1', '1.5', '17', 'yes']) {
      expect(() => parseConfig(config(`{ name: app, host: db.internal, user: dbward, prewarm: ${bad} }`), SRC), bad).toThrow(ConfigError);
    }
  });
});

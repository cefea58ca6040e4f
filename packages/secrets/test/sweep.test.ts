// Sealing stored values again: what a start-up sweep does with each kind of value.
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { memorySecrets, plaintextBytes, resealValue, seal } from '../src/index.ts';

const key = (id: string) => ({ id, bytes: randomBytes(32) });

describe('resealValue', () => {
  const old = key('old');
  const active = key('active');
  const ring = memorySecrets([active, old], 'active');

  it('seals a value in clear, seals an older key’s value again, keeps the active key’s', () => {
    const clear = resealValue(ring, 'hunter2');
    expect(clear.changed).toBe(true);
    expect(ring.open(clear.value)).toBe('hunter2');
    const older = resealValue(ring, seal(old, 'hunter2'));
    expect(older.changed).toBe(true);
    expect(older.value.startsWith('sl:v1:active:')).toBe(true);
    const current = seal(active, 'hunter2');
    expect(resealValue(ring, current)).toEqual({ value: current, changed: false });
  });

  it('keeps a value sealed under a key this process does not have, instead of stopping the sweep', () => {
    const foreign = seal(key('elsewhere'), 'hunter2');
    expect(resealValue(ring, foreign)).toEqual({ value: foreign, changed: false });
    expect(() => ring.open(foreign)).toThrow(/elsewhere/);
  });

  it('counts a sealed value as the bytes it seals', () => {
    for (const text of ['', 'a', 'hunter2', 'é'.repeat(100), 'x'.repeat(4000)]) {
      expect(plaintextBytes(seal(active, text))).toBe(Buffer.byteLength(text));
      expect(plaintextBytes(text)).toBe(Buffer.byteLength(text));
    }
  });
});

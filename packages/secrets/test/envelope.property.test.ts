import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSealed, keyIdOf, open, SecretError, type SecretKey, seal } from '../src/index.ts';

const keyArb = fc
  .tuple(fc.stringMatching(/^[A-Za-z0-9_-]{1,64}$/), fc.uint8Array({ minLength: 32, maxLength: 32 }))
  .map(([id, bytes]): SecretKey => ({ id, bytes: Buffer.from(bytes) }));
const plaintextArb = fc.oneof(fc.string(), fc.string({ unit: 'grapheme', maxLength: 200 }));
const only = (key: SecretKey) => (id: string) => (id === key.id ? key : undefined);

describe('the envelope (AES-256-GCM, key id in the header)', () => {
  it('opens what it sealed, and never shows the plaintext', () => {
    fc.assert(
      fc.property(keyArb, plaintextArb, (key, plaintext) => {
        const envelope = seal(key, plaintext);
        expect(isSealed(envelope)).toBe(true);
        expect(keyIdOf(envelope)).toBe(key.id);
        if (plaintext.length >= 4) expect(envelope).not.toContain(plaintext);
        expect(open(only(key), envelope)).toBe(plaintext);
      }),
    );
  });

  it('seals the same value differently every time (random IV)', () => {
    const key = { id: 'k1', bytes: randomBytes(32) };
    expect(seal(key, 'hunter2')).not.toBe(seal(key, 'hunter2'));
  });

  it('refuses any altered byte of the data', () => {
    fc.assert(
      fc.property(keyArb, plaintextArb, fc.nat(), fc.integer({ min: 1, max: 255 }), (key, plaintext, at, flip) => {
        const envelope = seal(key, plaintext);
        const header = `sl:v1:${key.id}:`;
        const data = Buffer.from(envelope.slice(header.length), 'base64url');
        data[at % data.length]! ^= flip;
        const altered = header + data.toString('base64url');
        expect(() => open(only(key), altered)).toThrow(/fails authentication/);
      }),
    );
  });

  it('refuses data moved under another key id, even one with the same key bytes', () => {
    fc.assert(
      fc.property(keyArb, plaintextArb, (key, plaintext) => {
        const twin = { id: `${key.id.slice(0, 60)}-alt`, bytes: key.bytes };
        const envelope = seal(key, plaintext);
        const moved = envelope.replace(`sl:v1:${key.id}:`, `sl:v1:${twin.id}:`);
        expect(() => open(only(twin), moved)).toThrow(/fails authentication/);
      }),
    );
  });

  it('names the key it lacks', () => {
    const key = { id: 'k-old', bytes: randomBytes(32) };
    const envelope = seal(key, 'v');
    const fail = () => open(() => undefined, envelope);
    expect(fail).toThrow(SecretError);
    expect(fail).toThrow('secret sealed under key k-old, which this process does not have');
  });

  it('says what is wrong with a value that is no envelope, without echoing it', () => {
    for (const v of ['hunter2', 'sl:v1:', 'sl:v1:k1', 'sl:v2:k1:AAAA', 'sl:v1:bad.id:AAAA']) {
      expect(isSealed(v)).toBe(false);
      expect(() => open(() => undefined, v)).toThrow('not a sealed secret value (expected sl:v1:<key id>:<data>)');
    }
    const key = { id: 'k1', bytes: randomBytes(32) };
    expect(() => open(only(key), 'sl:v1:k1:AAAA')).toThrow('secret sealed under key k1 is truncated');
  });

  it('refuses keys of the wrong size or with an id that is not a plain name', () => {
    expect(() => seal({ id: 'k1', bytes: randomBytes(16) }, 'v')).toThrow('key k1 has 16 bytes; AES-256 needs 32');
    expect(() => seal({ id: 'k.1', bytes: randomBytes(32) }, 'v')).toThrow('key id "k.1" is not');
  });
});

import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  KeyRing,
  keyIdOf,
  keySourceFromEnv,
  memorySecrets,
  openEnvVars,
  resealDeep,
  seal,
  sealEnvVars,
} from '../src/index.ts';

function keyDir(ids: string[] = ['k1'], active: string | null = ids[0] ?? null): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'keys-'));
  chmodSync(dir, 0o700);
  for (const id of ids) writeFileSync(path.join(dir, `${id}.key`), randomBytes(32).toString('base64'), { mode: 0o600 });
  if (active !== null) writeFileSync(path.join(dir, 'active'), `${active}\n`, { mode: 0o600 });
  return dir;
}

describe('the key ring', () => {
  it('seals under the active key and opens under every key of the directory', () => {
    const dir = keyDir(['k1', 'k2'], 'k1');
    const ring = KeyRing.load({ dir });
    const old = ring.seal('hunter2');
    expect(keyIdOf(old)).toBe('k1');
    writeFileSync(path.join(dir, 'active'), 'k2\n');
    const fresh = ring.seal('hunter2');
    expect(keyIdOf(fresh)).toBe('k2');
    expect(ring.open(old)).toBe('hunter2');
    expect(ring.open(fresh)).toBe('hunter2');
  });

  it('rotates: a new 0600 key becomes active, the old one still opens, another process follows at once', () => {
    const dir = keyDir(['k1']);
    const ring = KeyRing.load({ dir });
    const other = KeyRing.load({ dir });
    const before = ring.seal('s3cret');
    const id = ring.rotate(new Date('2026-12-03T14:00:00Z'));
    expect(id).toMatch(/^k20261203140000-[0-9a-f]{4}$/);
    expect(statSync(path.join(dir, `${id}.key`)).mode & 0o777).toBe(0o600);
    expect(readFileSync(path.join(dir, 'active'), 'utf8').trim()).toBe(id);
    expect(readdirSync(dir).filter((n) => n.startsWith('.'))).toEqual([]);
    expect(keyIdOf(other.seal('x'))).toBe(id);
    expect(other.open(ring.seal('y'))).toBe('y');
    expect(other.open(before)).toBe('s3cret');
  });

  it('refuses keys others can read, a missing active key, and says which file', () => {
    const open = keyDir(['k1']);
    chmodSync(path.join(open, 'k1.key'), 0o644);
    expect(() => KeyRing.load({ dir: open })).toThrow(`key file ${path.join(open, 'k1.key')} has mode 0644`);
    const wide = keyDir(['k1']);
    chmodSync(wide, 0o755);
    expect(() => KeyRing.load({ dir: wide })).toThrow(`the key directory ${wide} has mode 0755: it must be 0700`);
    const noActive = keyDir(['k1'], null);
    expect(() => KeyRing.load({ dir: noActive })).toThrow(`no active key: ${path.join(noActive, 'active')}`);
    const dangling = keyDir(['k1'], 'k9');
    expect(() => KeyRing.load({ dir: dangling })).toThrow('the active key k9');
    const short = keyDir([]);
    writeFileSync(path.join(short, 'k1.key'), randomBytes(16).toString('base64'), { mode: 0o600 });
    writeFileSync(path.join(short, 'active'), 'k1');
    expect(() => KeyRing.load({ dir: short })).toThrow('holds 16 bytes; it must hold 32');
  });

  it('takes a single key file, which cannot rotate', () => {
    const dir = keyDir(['prod-2026']);
    const ring = KeyRing.load({ file: path.join(dir, 'prod-2026.key') });
    expect(ring.activeKeyId()).toBe('prod-2026');
    expect(ring.open(ring.seal('v'))).toBe('v');
    expect(() => ring.rotate()).toThrow('rotation needs a key directory');
  });

  it('finds its keys from the environment, and says what to set', () => {
    expect(keySourceFromEnv({ STAGELINE_SECRET_KEY_FILE: '/k/a.key', STAGELINE_STATE: '/s' })).toEqual({
      file: '/k/a.key',
    });
    expect(keySourceFromEnv({ STAGELINE_SECRET_KEY_DIR: '/k', STAGELINE_STATE: '/s' })).toEqual({ dir: '/k' });
    expect(keySourceFromEnv({ STAGELINE_STATE: '/s' })).toEqual({ dir: '/s/keys' });
    expect(() => keySourceFromEnv({})).toThrow('secret keys are required: set STAGELINE_SECRET_KEY_DIR');
  });

  it('makes its directory 0700 when rotating into a new one', () => {
    const parent = mkdtempSync(path.join(tmpdir(), 'keys-'));
    const dir = path.join(parent, 'keys');
    mkdirSync(dir, { mode: 0o700 });
    writeFileSync(path.join(dir, 'k0.key'), randomBytes(32).toString('base64'), { mode: 0o600 });
    writeFileSync(path.join(dir, 'active'), 'k0');
    const ring = KeyRing.load({ dir });
    ring.rotate();
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });
});

describe('values', () => {
  const k1 = { id: 'k1', bytes: randomBytes(32) };
  const k2 = { id: 'k2', bytes: randomBytes(32) };

  it('seals only secret env vars, keeps an empty one empty, and opens them back', () => {
    const s = memorySecrets([k1]);
    const vars = [
      { key: 'A', value: 'plain', secret: false },
      { key: 'B', value: 'hunter2', secret: true },
      { key: 'C', value: '', secret: true },
    ];
    const sealed = sealEnvVars(s, vars);
    expect(sealed[0]).toEqual(vars[0]);
    expect(keyIdOf(sealed[1]!.value)).toBe('k1');
    expect(sealed[2]!.value).toBe('');
    expect(openEnvVars(s, sealed)).toEqual(vars);
    expect(() => openEnvVars(s, vars)).toThrow('env var B: not a sealed secret value');
  });

  it('reseals every envelope of a document under the active key, and nothing else', () => {
    const doc = {
      services: [{ envVars: [{ value: seal(k1, 'a'), secret: true }, { value: 'plain' }] }],
      o: seal(k2, 'b'),
    };
    const s = memorySecrets([k1, k2], 'k2');
    const { value, changed } = resealDeep(s, doc);
    expect(changed).toBe(1);
    expect(keyIdOf(value.services[0]!.envVars[0]!.value)).toBe('k2');
    expect(s.open(value.services[0]!.envVars[0]!.value)).toBe('a');
    expect(value.services[0]!.envVars[1]!.value).toBe('plain');
    expect(value.o).toBe(doc.o);
    expect(resealDeep(s, value)).toEqual({ value, changed: 0 });
  });
});

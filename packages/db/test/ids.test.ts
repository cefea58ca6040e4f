import { describe, expect, it } from 'vitest';
import { idTime, isUniqueViolation, newId } from '../src/index.ts';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('newId', () => {
  it('makes RFC 9562 version 7 UUIDs carrying the creation time', () => {
    const before = Date.now();
    const id = newId();
    const after = Date.now();
    expect(id).toMatch(UUID_V7);
    const t = idTime(id).getTime();
    expect(t).toBeGreaterThanOrEqual(before);
    expect(t).toBeLessThanOrEqual(after + 1);
  });

  it('is unique and strictly increasing within a process, even in the same millisecond', () => {
    const ids = Array.from({ length: 20_000 }, () => newId());
    expect(new Set(ids).size).toBe(ids.length);
    for (let i = 1; i < ids.length; i++) {
      expect(ids[i]! > ids[i - 1]!).toBe(true);
    }
    for (const id of ids) {
      expect(id).toMatch(UUID_V7);
    }
  });
});

describe('isUniqueViolation', () => {
  it('recognises SQLSTATE 23505, optionally by constraint, through causes', () => {
    const pgError = Object.assign(new Error('duplicate key'), { code: '23505', constraint: 'thing_name_key' });
    expect(isUniqueViolation(pgError)).toBe(true);
    expect(isUniqueViolation(pgError, 'thing_name_key')).toBe(true);
    expect(isUniqueViolation(pgError, 'other_key')).toBe(false);
    expect(isUniqueViolation(new Error('wrapped', { cause: pgError }), 'thing_name_key')).toBe(true);
    expect(isUniqueViolation(Object.assign(new Error('fk'), { code: '23503' }))).toBe(false);
    expect(isUniqueViolation(undefined)).toBe(false);
    expect(isUniqueViolation('23505')).toBe(false);
  });
});

// Sealing and opening the shapes secret values travel in: env var lists (`secret: true` entries) and
// maps of values (job outputs, injected env). Pure over a Secrets.
import { isSealed, keyIdOf } from './envelope.ts';
import type { Secrets } from './keyring.ts';

interface EnvVarLike {
  key: string;
  value: string;
  secret: boolean;
}

/** Secret entries sealed (an empty value stays empty: "keep the stored one"); others as they are. */
export function sealEnvVars<T extends EnvVarLike>(secrets: Secrets, vars: readonly T[]): T[] {
  return vars.map((v) => (v.secret && v.value !== '' ? { ...v, value: secrets.seal(v.value) } : v));
}

/** Secret entries opened; a secret entry that is not sealed is refused (it was never meant to travel so). */
export function openEnvVars<T extends EnvVarLike>(secrets: Secrets, vars: readonly T[]): T[] {
  return vars.map((v) => {
    if (!v.secret || v.value === '') return v;
    try {
      return { ...v, value: secrets.open(v.value) };
    } catch (e) {
      throw new Error(`env var ${v.key}: ${(e as Error).message}`, { cause: e });
    }
  });
}

export function sealValues(secrets: Secrets, values: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, secrets.seal(v)]));
}

export function openValues(secrets: Secrets, values: Readonly<Record<string, string>>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(values).map(([k, v]) => {
      try {
        return [k, secrets.open(v)];
      } catch (e) {
        throw new Error(`${k}: ${(e as Error).message}`, { cause: e });
      }
    }),
  );
}

/** The same envelope when it is under the active key, else the value sealed again under it. */
export function reseal(secrets: Secrets, envelope: string): string {
  return keyIdOf(envelope) === secrets.activeKeyId() ? envelope : secrets.seal(secrets.open(envelope));
}

export interface Resealed<T> {
  value: T;
  /** Envelopes sealed again under the active key. */
  changed: number;
}

/**
 * Every envelope anywhere in a JSON value (a stored row's document) sealed again under the active key;
 * what is already under it, and every other string, stays as it is.
 */
export function resealDeep<T>(secrets: Secrets, value: T): Resealed<T> {
  const active = secrets.activeKeyId();
  let changed = 0;
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') {
      if (!isSealed(v) || keyIdOf(v) === active) return v;
      changed++;
      return secrets.seal(secrets.open(v));
    }
    if (Array.isArray(v)) return v.map(walk);
    if (v !== null && typeof v === 'object') {
      return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x)]));
    }
    return v;
  };
  const next = walk(value) as T;
  return { value: changed === 0 ? value : next, changed };
}

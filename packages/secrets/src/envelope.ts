// The envelope of one secret value: `sl:v1:<key id>:<base64url(iv ‖ ciphertext ‖ tag)>`, AES-256-GCM with a
// 96-bit random IV and a 128-bit tag; the header `sl:v1:<key id>` is the associated data, so a ciphertext
// moved under another key id fails to open. Pure: keys are passed in.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';

export const ENVELOPE_PREFIX = 'sl:v1:';
const IV_BYTES = 12;
const TAG_BYTES = 16;
export const KEY_BYTES = 32;
/** Key ids become file names and envelope fields: no separators, no dots. */
export const KEY_ID = /^[A-Za-z0-9_-]{1,64}$/;
const ENVELOPE = /^sl:v1:([A-Za-z0-9_-]{1,64}):([A-Za-z0-9_-]+)$/;

export interface SecretKey {
  id: string;
  /** 32 bytes. */
  bytes: Buffer;
}

/** A value that cannot be sealed or opened; the message says which key and why, never the value. */
export class SecretError extends Error {
  readonly keyId: string | undefined;
  constructor(message: string, keyId?: string) {
    super(message);
    this.name = 'SecretError';
    this.keyId = keyId;
  }
}

/** Whether `value` has the envelope's shape (it may still fail to open). */
export function isSealed(value: string): boolean {
  return ENVELOPE.test(value);
}

/**
 * The size in bytes of the value an envelope seals, read off its length (no key needed): what limits
 * on user input count, whatever encryption adds. A value that is not an envelope counts as itself.
 */
export function plaintextBytes(value: string): number {
  const m = ENVELOPE.exec(value);
  if (m === null) return Buffer.byteLength(value);
  return Math.max(0, Buffer.from(m[2]!, 'base64url').length - IV_BYTES - TAG_BYTES);
}

/** The key id an envelope names; throws SecretError for anything that is not an envelope. */
export function keyIdOf(envelope: string): string {
  const m = ENVELOPE.exec(envelope);
  if (m === null) throw new SecretError('not a sealed secret value (expected sl:v1:<key id>:<data>)');
  return m[1]!;
}

function checkKey(key: SecretKey): void {
  if (!KEY_ID.test(key.id)) throw new SecretError(`key id "${key.id}" is not [A-Za-z0-9_-]{1,64}`, key.id);
  if (key.bytes.length !== KEY_BYTES) {
    throw new SecretError(`key ${key.id} has ${key.bytes.length} bytes; AES-256 needs ${KEY_BYTES}`, key.id);
  }
}

export function seal(key: SecretKey, plaintext: string, iv: Buffer = randomBytes(IV_BYTES)): string {
  checkKey(key);
  const header = `${ENVELOPE_PREFIX}${key.id}`;
  const cipher = createCipheriv('aes-256-gcm', key.bytes, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(header, 'utf8'));
  const ct = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return `${header}:${Buffer.concat([iv, ct, cipher.getAuthTag()]).toString('base64url')}`;
}

/** `keyFor` finds the key an envelope names (undefined: unknown). Throws SecretError, never returns garbage. */
export function open(keyFor: (id: string) => SecretKey | undefined, envelope: string): string {
  const id = keyIdOf(envelope);
  const key = keyFor(id);
  if (key === undefined) throw new SecretError(`secret sealed under key ${id}, which this process does not have`, id);
  checkKey(key);
  const data = Buffer.from(envelope.slice(ENVELOPE_PREFIX.length + id.length + 1), 'base64url');
  if (data.length < IV_BYTES + TAG_BYTES) throw new SecretError(`secret sealed under key ${id} is truncated`, id);
  const decipher = createDecipheriv('aes-256-gcm', key.bytes, data.subarray(0, IV_BYTES), {
    authTagLength: TAG_BYTES,
  });
  decipher.setAAD(Buffer.from(`${ENVELOPE_PREFIX}${id}`, 'utf8'));
  decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
  try {
    return Buffer.concat([
      decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)),
      decipher.final(),
    ]).toString('utf8');
  } catch {
    throw new SecretError(`secret sealed under key ${id} fails authentication (altered, or another key)`, id);
  }
}

/** The prefix of a fingerprint: `hmac-sha256:<key id>:<hex>`. */
export const FINGERPRINT_PREFIX = 'hmac-sha256:';
const FINGERPRINT = /^hmac-sha256:([A-Za-z0-9_-]{1,64}):[0-9a-f]{64}$/;

/**
 * A keyed digest of a secret value: equal for equal values under the same key, and — unlike a bare
 * SHA-256 — of no use to whoever reads it without the key (a guessed password cannot be checked against
 * it). HMAC-SHA256 under a subkey derived from the key with HKDF (never the AES key itself). Deterministic.
 */
export function fingerprint(key: SecretKey, plaintext: string): string {
  checkKey(key);
  const subkey = Buffer.from(hkdfSync('sha256', key.bytes, Buffer.alloc(0), 'stageline fingerprint v1', KEY_BYTES));
  return `${FINGERPRINT_PREFIX}${key.id}:${createHmac('sha256', subkey).update(plaintext, 'utf8').digest('hex')}`;
}

/** The key id a fingerprint was made under, or undefined for anything that is not a fingerprint. */
export function fingerprintKeyId(value: string): string | undefined {
  return FINGERPRINT.exec(value)?.[1];
}

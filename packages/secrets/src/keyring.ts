// The installation's keys. A key directory (`$STAGELINE_STATE/keys`, made by deploy/dev/credentials.sh)
// holds `<key id>.key` files (32 random bytes, base64, mode 0600) and `active`, naming the key new values
// are sealed under; the directory is 0700. Every key in it stays readable, so values sealed before a
// rotation open until they are sealed again. `STAGELINE_SECRET_KEY_FILE` names a single key file instead
// (a mounted secret; its key id is its name without `.key`), which cannot be rotated in place.
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fingerprint, KEY_BYTES, KEY_ID, open, SecretError, type SecretKey, seal } from './envelope.ts';

/** What services seal and open secret values with. */
export interface Secrets {
  /** The key new values are sealed under. */
  activeKeyId(): string;
  seal(plaintext: string): string;
  /** Throws SecretError naming the key when the envelope cannot be opened. */
  open(envelope: string): string;
  /** A keyed digest of a value (under the active key): comparable, not guessable. See envelope.ts. */
  fingerprint(plaintext: string): string;
}

export type KeySource = { dir: string } | { file: string };

/** Refuses a key readable by others: a key anyone can read protects nothing. */
function checkPrivate(file: string, what: string): void {
  const mode = statSync(file).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new SecretError(
      `${what} ${file} has mode 0${mode.toString(8)}: it must be readable by its owner only (0600)`,
    );
  }
}

function readKey(file: string, id: string): SecretKey {
  checkPrivate(file, 'key file');
  const bytes = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
  if (bytes.length !== KEY_BYTES) {
    throw new SecretError(`key file ${file} holds ${bytes.length} bytes; it must hold ${KEY_BYTES} (base64)`, id);
  }
  return { id, bytes };
}

/** A new key id, sortable by creation time: `k<UTC yyyymmddHHMMSS>-<4 random hex>`. */
export function newKeyId(now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/[-:T]/g, '').slice(0, 14);
  return `k${stamp}-${randomBytes(2).toString('hex')}`;
}

export class KeyRing implements Secrets {
  readonly source: KeySource;
  readonly #keys = new Map<string, SecretKey>();

  private constructor(source: KeySource) {
    this.source = source;
  }

  /** Reads the keys now: a missing or unreadable key fails here, at start, not at the first secret. */
  static load(source: KeySource): KeyRing {
    const ring = new KeyRing(source);
    if ('file' in source) {
      const id = path.basename(source.file).replace(/\.key$/, '');
      if (!KEY_ID.test(id)) {
        throw new SecretError(`key file ${source.file}: its name must be <key id>.key, the id [A-Za-z0-9_-]{1,64}`);
      }
      ring.#keys.set(id, readKey(source.file, id));
    } else {
      ring.#scan();
      ring.activeKeyId();
    }
    return ring;
  }

  #scan(): void {
    const { dir } = this.source as { dir: string };
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (e) {
      throw new SecretError(`the key directory ${dir} cannot be read: ${(e as Error).message}`);
    }
    const mode = statSync(dir).mode & 0o777;
    if ((mode & 0o077) !== 0) {
      throw new SecretError(`the key directory ${dir} has mode 0${mode.toString(8)}: it must be 0700`);
    }
    for (const name of names) {
      const id = name.replace(/\.key$/, '');
      if (id === name || !KEY_ID.test(id) || this.#keys.has(id)) continue;
      this.#keys.set(id, readKey(path.join(dir, name), id));
    }
  }

  #key(id: string): SecretKey | undefined {
    if (!this.#keys.has(id) && 'dir' in this.source) this.#scan(); // made by a rotation since we last looked
    return this.#keys.get(id);
  }

  /** Read again on every call in a directory: a rotation by another process takes effect at once. */
  activeKeyId(): string {
    if ('file' in this.source) return [...this.#keys.keys()][0]!;
    const file = path.join(this.source.dir, 'active');
    let id: string;
    try {
      id = readFileSync(file, 'utf8').trim();
    } catch (e) {
      throw new SecretError(`no active key: ${file} cannot be read (${(e as Error).message})`);
    }
    if (this.#key(id) === undefined) throw new SecretError(`the active key ${id} (${file}) has no ${id}.key`, id);
    return id;
  }

  /** Every key id this ring can open. */
  keyIds(): string[] {
    if ('dir' in this.source) this.#scan();
    return [...this.#keys.keys()].sort();
  }

  seal(plaintext: string): string {
    return seal(this.#key(this.activeKeyId())!, plaintext);
  }

  open(envelope: string): string {
    return open((id) => this.#key(id), envelope);
  }

  fingerprint(plaintext: string): string {
    return fingerprint(this.#key(this.activeKeyId())!, plaintext);
  }

  /**
   * Makes a new key and makes it the active one (the key file first, then `active` by rename, so no
   * process ever sees an active key without its file). Earlier keys stay: values sealed under them open.
   */
  rotate(now: Date = new Date()): string {
    if (!('dir' in this.source)) {
      throw new SecretError(
        `keys come from STAGELINE_SECRET_KEY_FILE (${this.source.file}): rotation needs a key directory (STAGELINE_SECRET_KEY_DIR)`,
      );
    }
    const { dir } = this.source;
    const id = newKeyId(now);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeFileSync(path.join(dir, `${id}.key`), `${randomBytes(KEY_BYTES).toString('base64')}\n`, {
      mode: 0o600,
      flag: 'wx',
    });
    const staging = path.join(dir, `.active-${id}`);
    writeFileSync(staging, `${id}\n`, { mode: 0o600 });
    chmodSync(staging, 0o600);
    renameSync(staging, path.join(dir, 'active'));
    this.#scan();
    return id;
  }
}

/**
 * The key source from the environment: `STAGELINE_SECRET_KEY_FILE`, else `STAGELINE_SECRET_KEY_DIR`, else
 * `$STAGELINE_STATE/keys`. Throws SecretError naming what to set when none is.
 */
export function keySourceFromEnv(env: Readonly<Record<string, string | undefined>>): KeySource {
  const file = env.STAGELINE_SECRET_KEY_FILE?.trim();
  if (file) return { file: path.resolve(file) };
  const dir = env.STAGELINE_SECRET_KEY_DIR?.trim();
  if (dir) return { dir: path.resolve(dir) };
  const state = env.STAGELINE_STATE?.trim();
  if (state) return { dir: path.resolve(state, 'keys') };
  throw new SecretError(
    'secret keys are required: set STAGELINE_SECRET_KEY_DIR (a directory made by deploy/dev/credentials.sh), STAGELINE_SECRET_KEY_FILE, or STAGELINE_STATE',
  );
}

/** A ring over keys in memory (pure tests). */
export function memorySecrets(keys: readonly SecretKey[], activeId = keys[0]?.id ?? ''): Secrets {
  const byId = new Map(keys.map((k) => [k.id, k]));
  return {
    activeKeyId: () => activeId,
    seal: (plaintext) => {
      const key = byId.get(activeId);
      if (key === undefined) throw new SecretError(`the active key ${activeId} is unknown`, activeId);
      return seal(key, plaintext);
    },
    open: (envelope) => open((id) => byId.get(id), envelope),
    fingerprint: (plaintext) => {
      const key = byId.get(activeId);
      if (key === undefined) throw new SecretError(`the active key ${activeId} is unknown`, activeId);
      return fingerprint(key, plaintext);
    },
  };
}

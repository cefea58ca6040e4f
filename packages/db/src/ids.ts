import { randomFillSync } from 'node:crypto';

// Random bytes come from a pool refilled 4 KiB at a time: one call into the CSPRNG per 256 ids instead
// of two per id (the hot paths make several ids per job).
const POOL = Buffer.alloc(4096);
let poolAt = POOL.length;
function random(n: number): Buffer {
  if (poolAt + n > POOL.length) {
    randomFillSync(POOL);
    poolAt = 0;
  }
  const out = POOL.subarray(poolAt, poolAt + n);
  poolAt += n;
  return out;
}

// Monotonic state for this process: ids made in the same millisecond keep their creation order
// (RFC 9562 §6.2, method 1: a 12-bit counter in rand_a seeded randomly each new millisecond).
let lastMs = -1;
let counter = 0;

/**
 * A UUIDv7 string (RFC 9562): 48-bit Unix milliseconds, then a per-process counter and 62 random bits.
 * Ids sort by creation time as strings and as `uuid` values, so they make good primary keys and message ids.
 */
export function newId(): string {
  let ms = Date.now();
  if (ms <= lastMs) {
    // Same millisecond (or the clock stepped back): keep counting on the last timestamp.
    ms = lastMs;
    counter++;
    if (counter > 0xfff) {
      ms = lastMs + 1;
      counter = random(2).readUInt16BE(0) & 0x3ff;
    }
  } else {
    // Seed low so the counter has room to grow within the millisecond.
    counter = random(2).readUInt16BE(0) & 0x3ff;
  }
  lastMs = ms;

  // A copy: the pool's bytes are handed out once and never reused.
  const bytes = Buffer.from(random(16));
  bytes.writeUIntBE(ms, 0, 6);
  bytes[6] = 0x70 | ((counter >> 8) & 0x0f);
  bytes[7] = counter & 0xff;
  bytes[8] = 0x80 | (bytes[8]! & 0x3f);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** The creation time encoded in a UUIDv7 (millisecond precision). */
export function idTime(id: string): Date {
  return new Date(Number.parseInt(id.replaceAll('-', '').slice(0, 12), 16));
}

// Summary statistics for repeated measurements: the median and the spread (min–max) of each figure.

export interface Summary {
  n: number;
  median: number;
  min: number;
  max: number;
  /** (max − min) / median, as a fraction: how much repetitions disagree. */
  spread: number;
}

export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  // Linear interpolation between closest ranks (type 7, as numpy's default).
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export const median = (values: readonly number[]): number => quantile(values, 0.5);

export function summarize(values: readonly number[]): Summary {
  const med = median(values);
  const min = Math.min(...values);
  const max = Math.max(...values);
  return { n: values.length, median: med, min, max, spread: med === 0 ? 0 : (max - min) / Math.abs(med) };
}

/** Total length covered by a set of intervals. */
export function unionLength(intervals: readonly { start: number; end: number }[]): number {
  const sorted = [...intervals].sort((a, b) => a.start - b.start);
  let total = 0;
  let end = Number.NEGATIVE_INFINITY;
  for (const i of sorted) {
    if (i.end <= end) continue;
    total += i.end - Math.max(i.start, end);
    end = i.end;
  }
  return total;
}

/** The most intervals open at one instant (an end at t closes before a start at t). */
export function maxOverlap(intervals: readonly { start: number; end: number }[]): number {
  const points = intervals.flatMap((i) => [
    { t: i.start, d: 1 },
    { t: i.end, d: -1 },
  ]);
  points.sort((a, b) => a.t - b.t || a.d - b.d);
  let open = 0;
  let max = 0;
  for (const p of points) {
    open += p.d;
    max = Math.max(max, open);
  }
  return max;
}

/** A seeded PRNG (mulberry32): the same seed gives the same environments on every machine. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

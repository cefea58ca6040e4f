// The secret values a chart carries (its Secret manifests' data and stringData): what a job's output
// must not show. Pure.
import type { Manifest } from './chart.ts';

export function secretValuesIn(manifests: readonly Manifest[]): string[] {
  const values: string[] = [];
  for (const m of manifests) {
    if (m.kind !== 'Secret') continue;
    const record = m as unknown as { data?: Record<string, unknown>; stringData?: Record<string, unknown> };
    for (const v of Object.values(record.data ?? {})) values.push(Buffer.from(String(v), 'base64').toString('utf8'));
    for (const v of Object.values(record.stringData ?? {})) values.push(String(v));
  }
  return values;
}

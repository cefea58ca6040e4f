// A job's output: the JSON object it writes to /stageline/output/output.json, whose values become
// environment variables of the services in later stages.
import { RolloutError } from './failures.ts';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Kubernetes keeps at most 4 KiB of a termination message; the same limit everywhere.
export const MAX_JOB_OUTPUT_BYTES = 4096;

/**
 * `{}` for no file or an empty one. Strings are taken as they are, numbers and booleans as their JSON
 * text, anything else as JSON. A job that wrote something else fails: its output was its contract.
 */
export function parseJobOutput(text: string): Record<string, string> {
  if (text.trim() === '') return {};
  if (Buffer.byteLength(text) > MAX_JOB_OUTPUT_BYTES) {
    throw new RolloutError('failed', `output.json is larger than ${MAX_JOB_OUTPUT_BYTES} bytes`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new RolloutError('failed', `output.json is not JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new RolloutError('failed', 'output.json must hold a JSON object ({"NAME": "value", …})');
  }
  const out: Record<string, string> = {};
  for (const [key, v] of Object.entries(value)) {
    if (!ENV_NAME.test(key)) {
      throw new RolloutError('failed', `output.json: "${key}" cannot be an environment variable name`);
    }
    out[key] = typeof v === 'string' ? v : JSON.stringify(v);
  }
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => (a < b ? -1 : 1)));
}

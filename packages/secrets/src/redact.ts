// Lines a worker reports about a workload (its own output, its exit messages) may carry the secrets the
// workload was given: they become "***" before they are logged, streamed or stored, and so does the
// password part of any URL.

export type Redact = (text: string) => string;

const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^/\s:@]*):[^@/\s]*@/gi;
/** Shorter values would blank out ordinary words; such "secrets" protect nothing anyway. */
const MIN_SECRET_LENGTH = 3;

export function redactor(secrets: Iterable<string | undefined>): Redact {
  const values = [...new Set([...secrets].filter((s): s is string => s !== undefined && s.length >= MIN_SECRET_LENGTH))]
    // Longest first, so a secret containing another is replaced whole.
    .sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text.replace(URL_PASSWORD, '$1:***@');
    for (const value of values) out = out.split(value).join('***');
    return out;
  };
}

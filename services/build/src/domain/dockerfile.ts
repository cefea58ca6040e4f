// What a Dockerfile declares with ARG, read the way the builder reads it: parser directives (`# escape=`),
// line continuations, comments, heredocs skipped, several `ARG a b=1` on one line. Only the names matter
// here: their values from the service's environment are build inputs, nothing else of the environment is.

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

function escapeCharacter(lines: readonly string[]): string {
  // Parser directives are only valid before the first instruction, comment or blank line.
  for (const line of lines) {
    const m = /^\s*#\s*([A-Za-z]+)\s*=\s*(\S+)\s*$/.exec(line);
    if (!m) break;
    if (m[1]!.toLowerCase() === 'escape' && (m[2] === '`' || m[2] === '\\')) return m[2];
  }
  return '\\';
}

/** Logical instructions: continuation lines joined, comment lines dropped, heredoc bodies skipped. */
export function instructions(content: string): string[] {
  const lines = content.replace(/\r\n?/g, '\n').split('\n');
  const escapeChar = escapeCharacter(lines);
  const out: string[] = [];
  let current: string | undefined;
  let heredocs: string[] = [];
  for (const raw of lines) {
    if (heredocs.length > 0) {
      // `<<-EOF` allows the terminator to be indented by tabs.
      if (raw.replace(/^\t+/, '') === heredocs[0]) heredocs = heredocs.slice(1);
      continue;
    }
    const trimmed = raw.trim();
    if (current === undefined && (trimmed === '' || trimmed.startsWith('#'))) continue;
    if (current !== undefined && trimmed.startsWith('#')) continue;
    const continued = trimmed.endsWith(escapeChar);
    const piece = continued ? trimmed.slice(0, -1) : trimmed;
    current = current === undefined ? piece : `${current} ${piece}`;
    if (continued) continue;
    out.push(current);
    for (const m of current.matchAll(/<<-?\s*(["']?)([A-Za-z_][A-Za-z0-9_]*)\1/g)) heredocs.push(m[2]!);
    current = undefined;
  }
  if (current !== undefined && current.trim() !== '') out.push(current);
  return out;
}

/** Splits an ARG's arguments on blanks outside quotes. */
function words(text: string): string[] {
  const out: string[] = [];
  let word = '';
  let quote: string | undefined;
  for (const ch of text) {
    if (quote !== undefined) {
      word += ch;
      if (ch === quote) quote = undefined;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      word += ch;
    } else if (/\s/.test(ch)) {
      if (word !== '') out.push(word);
      word = '';
    } else {
      word += ch;
    }
  }
  if (word !== '') out.push(word);
  return out;
}

/** Names of every ARG the Dockerfile declares (any stage, before FROM too), sorted, each once. */
export function declaredArgs(content: string): string[] {
  const names = new Set<string>();
  for (const instruction of instructions(content)) {
    const m = /^ARG\s+(.*)$/i.exec(instruction);
    if (!m) continue;
    for (const word of words(m[1]!)) {
      const name = word.split('=')[0]!;
      if (NAME.test(name)) names.add(name);
    }
  }
  return [...names].sort();
}

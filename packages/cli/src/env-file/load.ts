// Reads an environment file: YAML → validated against the published JSON Schema → the file's model,
// with every problem reported as file:line:column: field: message.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Ajv, type ErrorObject } from 'ajv';
import { isMap, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import type { EnvironmentFile } from './model.ts';

export type FieldPath = (string | number)[];

export interface FileProblem {
  file: string;
  line: number;
  column: number;
  /** `services[0].container.tag`; empty for the document as a whole. */
  field: string;
  message: string;
}

export const formatProblem = (p: FileProblem) =>
  `${p.file}:${p.line}:${p.column}: ${p.field === '' ? '' : `${p.field}: `}${p.message}`;

export class EnvironmentFileError extends Error {
  readonly problems: FileProblem[];
  /** 'check': found before anything was sent; 'apply': the server refused a call part-way through. */
  readonly during: 'check' | 'apply';
  constructor(problems: FileProblem[], during: 'check' | 'apply' = 'check') {
    super(problems.map(formatProblem).join('\n'));
    this.name = 'EnvironmentFileError';
    this.problems = problems;
    this.during = during;
  }
}

export function formatField(path: FieldPath): string {
  let out = '';
  for (const part of path) out += typeof part === 'number' ? `[${part}]` : out === '' ? part : `.${part}`;
  return out;
}

/** A loaded file: its content and a way back from a field to where it is written. */
export interface LoadedFile {
  file: string;
  content: EnvironmentFile;
  /** Line and column (1-based) of a field, or of the nearest enclosing one that is written. */
  locate(path: FieldPath): { line: number; column: number };
  problem(path: FieldPath, message: string): FileProblem;
}

const require = createRequire(import.meta.url);
/** The published schema (packages/cli/schema/environment.schema.json). */
export const schemaPath: string = require.resolve('../../schema/environment.schema.json');

type Validate = ((data: unknown) => boolean) & { errors?: ErrorObject[] | null };
let compiled: Validate | undefined;

function validator(): Validate {
  if (!compiled) {
    const ajv = new Ajv({ allErrors: true, verbose: true, strict: true, strictRequired: false, strictTypes: false });
    // Our own annotation: the message to show when the schema it sits on fails as a whole.
    ajv.addKeyword({ keyword: 'x-message', schemaType: 'string' });
    compiled = ajv.compile(JSON.parse(readFileSync(schemaPath, 'utf8')) as object) as Validate;
  }
  return compiled;
}

function pointerToPath(pointer: string): FieldPath {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((s) => (/^\d+$/.test(s) ? Number(s) : s));
}

const describe = (schema: unknown) =>
  typeof schema === 'object' && schema !== null ? (schema as Record<string, unknown>)['x-message'] : undefined;

/** Turns Ajv's errors into one message per field, in words a person can act on. */
function explain(errors: ErrorObject[], content: unknown): { path: FieldPath; keyPath?: boolean; message: string }[] {
  const out: { path: FieldPath; keyPath?: boolean; message: string }[] = [];
  const kindOf = (path: FieldPath): string | undefined => {
    let node: unknown = content;
    for (const p of path.slice(0, 2)) node = (node as Record<string | number, unknown> | undefined)?.[p];
    const kind = (node as { kind?: unknown } | undefined)?.kind;
    return typeof kind === 'string' ? kind : undefined;
  };
  // An anyOf/oneOf that fails says so once, with its own message: the failures of its branches go.
  const alternatives = errors
    .filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf')
    .map((e) => `${e.schemaPath}/`);
  for (const e of errors) {
    if (alternatives.some((prefix) => e.schemaPath.startsWith(prefix))) continue;
    const path = pointerToPath(e.instancePath);
    // `if` failures only say which `then` applied; the `then` errors carry the substance.
    if (e.keyword === 'if') continue;
    const custom = describe(e.parentSchema);
    switch (e.keyword) {
      case 'additionalProperties': {
        const name = String((e.params as { additionalProperty: string }).additionalProperty);
        out.push({ path: [...path, name], keyPath: true, message: 'is not a known field' });
        break;
      }
      case 'required': {
        const name = String((e.params as { missingProperty: string }).missingProperty);
        const kind = path[0] === 'services' && path.length === 2 ? kindOf(path) : undefined;
        const why = kind && ['container', 'application', 'database', 'job'].includes(name) ? ` for a ${kind}` : '';
        out.push({ path, message: `${name} is required${why}` });
        break;
      }
      case 'false schema': {
        const kind = path[0] === 'services' ? kindOf(path) : undefined;
        out.push({
          path,
          keyPath: true,
          message: kind ? `does not apply to a ${kind} service` : 'is not allowed here',
        });
        break;
      }
      case 'enum':
        out.push({
          path,
          message: `must be one of ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`,
        });
        break;
      case 'const':
        out.push({ path, message: `must be ${JSON.stringify((e.params as { allowedValue: unknown }).allowedValue)}` });
        break;
      case 'type':
        out.push({
          path,
          message: `must be ${(e.params as { type: string }).type === 'integer' ? 'an integer' : `a ${(e.params as { type: string }).type}`}`,
        });
        break;
      case 'pattern':
        out.push({
          path,
          message: typeof custom === 'string' ? custom : `must match ${(e.params as { pattern: string }).pattern}`,
        });
        break;
      case 'oneOf':
      case 'anyOf':
        out.push({ path, message: typeof custom === 'string' ? custom : (e.message ?? 'is not valid') });
        break;
      default:
        out.push({
          path,
          message: typeof custom === 'string' && e.keyword.endsWith('Length') ? custom : (e.message ?? 'is not valid'),
        });
    }
  }
  // A wrong value often fails several keywords (type and pattern, oneOf and its branches): one line per field.
  const seen = new Set<string>();
  return out.filter((p) => {
    const key = `${formatField(p.path)}|${p.keyPath ? 'k' : 'v'}|${p.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/** Parses and validates one environment file; throws EnvironmentFileError listing every problem. */
export function loadEnvironmentFile(file: string, text?: string): LoadedFile {
  let source: string;
  try {
    source = text ?? readFileSync(file, 'utf8');
  } catch (e) {
    throw new EnvironmentFileError([
      { file, line: 1, column: 1, field: '', message: `cannot read: ${(e as NodeJS.ErrnoException).code ?? e}` },
    ]);
  }
  const lineCounter = new LineCounter();
  const doc = parseDocument(source, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number) => {
    const pos = lineCounter.linePos(offset);
    return { line: pos.line, column: pos.col };
  };
  if (doc.errors.length > 0) {
    throw new EnvironmentFileError(
      doc.errors.map((e) => ({ file, ...at(e.pos[0]), field: '', message: e.message.split('\n')[0] ?? e.message })),
    );
  }

  const nodeAt = (path: FieldPath, key: boolean): Node | undefined => {
    let node: unknown = doc.contents;
    for (let i = 0; i < path.length; i++) {
      const part = path[i]!;
      if (isMap(node)) {
        const pair = node.items.find((p) => (p.key as { value?: unknown } | null)?.value === part);
        if (!pair) return undefined;
        if (key && i === path.length - 1) return pair.key as Node;
        node = pair.value;
      } else if (isSeq(node) && typeof part === 'number') {
        node = node.items[part];
      } else {
        return undefined;
      }
    }
    return node as Node | undefined;
  };
  const locate = (path: FieldPath, key = false) => {
    for (let n = path.length; n >= 0; n--) {
      const node = nodeAt(path.slice(0, n), key && n === path.length);
      if (node?.range) return at(node.range[0]);
    }
    return { line: 1, column: 1 };
  };
  const problem = (path: FieldPath, message: string, key = false): FileProblem => ({
    file,
    ...locate(path, key),
    field: formatField(path),
    message,
  });

  const content: unknown = doc.toJS();
  if (content === null || content === undefined) {
    throw new EnvironmentFileError([{ file, line: 1, column: 1, field: '', message: 'is empty' }]);
  }
  const validate = validator();
  if (!validate(content)) {
    const problems = explain(validate.errors ?? [], content).map((p) => problem(p.path, p.message, p.keyPath));
    problems.sort((a, b) => a.line - b.line || a.column - b.column);
    throw new EnvironmentFileError(problems);
  }
  return { file, content: content as EnvironmentFile, locate: (p) => locate(p), problem: (p, m) => problem(p, m) };
}

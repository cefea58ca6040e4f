// Where the CLI finds Stageline: --address, then STAGELINE_ADDRESS, then the config file, then the
// default. The config file (~/.config/stageline/config.yaml) may also name a default project and environment.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { isMap, LineCounter, type Node, parseDocument } from 'yaml';
import { UsageError } from './errors.ts';

export const DEFAULT_ADDRESS = '127.0.0.1:50051';
export const DEFAULT_BUILD_ADDRESS = '127.0.0.1:50053';

export interface ConfigFile {
  /** control's gRPC address, host:port. */
  address?: string;
  /** The build service's gRPC address (explain-build). */
  buildAddress?: string;
  /** Used when an environment is named without its project. */
  project?: string;
  /** Used when a command names no environment. */
  environment?: string;
}
export const CONFIG_KEYS: (keyof ConfigFile)[] = ['address', 'buildAddress', 'project', 'environment'];

export function configPath(env: NodeJS.ProcessEnv): string {
  if (env.STAGELINE_CONFIG) return env.STAGELINE_CONFIG;
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return join(base, 'stageline', 'config.yaml');
}

export function readConfig(path: string): ConfigFile {
  if (!existsSync(path)) return {};
  const lineCounter = new LineCounter();
  const doc = parseDocument(readFileSync(path, 'utf8'), { lineCounter });
  const first = doc.errors[0];
  if (first) {
    const pos = lineCounter.linePos(first.pos[0]);
    throw new UsageError(`${path}:${pos.line}:${pos.col}: ${first.message.split('\n')[0]}`);
  }
  if (doc.contents === null) return {};
  if (!isMap(doc.contents)) throw new UsageError(`${path}:1:1: must be a map of ${CONFIG_KEYS.join(', ')}`);
  const out: ConfigFile = {};
  for (const pair of doc.contents.items) {
    const key = String((pair.key as { value?: unknown }).value);
    const value = (pair.value as { value?: unknown } | null)?.value;
    const at = lineCounter.linePos((pair.key as Node | null)?.range?.[0] ?? 0);
    if (!(CONFIG_KEYS as string[]).includes(key)) {
      throw new UsageError(`${path}:${at.line}:${at.col}: ${key}: is not a known setting (${CONFIG_KEYS.join(', ')})`);
    }
    if (typeof value !== 'string') throw new UsageError(`${path}:${at.line}:${at.col}: ${key}: must be a string`);
    out[key as keyof ConfigFile] = value;
  }
  return out;
}

export function writeConfigValue(path: string, key: keyof ConfigFile, value: string | undefined): void {
  const doc = existsSync(path) ? parseDocument(readFileSync(path, 'utf8')) : parseDocument('{}');
  if (value === undefined) doc.delete(key);
  else doc.set(key, value);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, doc.toString({ flowCollectionPadding: false }).replace(/^\{\}\n$/, ''));
}

export interface Endpoint {
  value: string;
  /** Where it came from, for error messages: "--address", "STAGELINE_ADDRESS", the config path, "default". */
  from: string;
}

export interface ResolvedConfig {
  address: Endpoint;
  buildAddress: Endpoint;
  project: string | undefined;
  environment: string | undefined;
  configPath: string;
}

export function resolveConfig(
  flags: { address?: string | undefined; buildAddress?: string | undefined; project?: string | undefined },
  env: NodeJS.ProcessEnv,
): ResolvedConfig {
  const path = configPath(env);
  const file = readConfig(path);
  const pick = (
    flag: string | undefined,
    flagName: string,
    envName: string,
    fromFile: string | undefined,
    fallback: string,
  ) =>
    flag
      ? { value: flag, from: flagName }
      : env[envName]
        ? { value: env[envName]!, from: envName }
        : fromFile
          ? { value: fromFile, from: path }
          : { value: fallback, from: 'default' };
  return {
    address: pick(flags.address, '--address', 'STAGELINE_ADDRESS', file.address, DEFAULT_ADDRESS),
    buildAddress: pick(
      flags.buildAddress,
      '--build-address',
      'STAGELINE_BUILD_ADDRESS',
      file.buildAddress,
      DEFAULT_BUILD_ADDRESS,
    ),
    project: flags.project || env.STAGELINE_PROJECT || file.project || undefined,
    environment: env.STAGELINE_ENVIRONMENT || file.environment || undefined,
    configPath: path,
  };
}

// Reads a V8 .cpuprofile (node --cpu-prof) and says where the CPU went: self time by module (a
// dependency, a workspace package, a service's own files) and the hottest functions. Async code shows
// up as separate stacks, so self time is the honest figure; inclusive time is given per function for
// the synchronous part only.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Which module a frame belongs to: a dependency, a workspace package, a service's own code, or V8. */
export function moduleOf(url: string, functionName: string): string {
  if (url === '') {
    if (functionName === '(idle)' || functionName === '(program)' || functionName === '(garbage collector)') {
      return functionName;
    }
    return '(native)';
  }
  const pnpm = /node_modules\/\.pnpm\/[^/]+\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pnpm) return pnpm[1]!;
  const nm = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (nm) return nm[1]!;
  const ws = /\/(packages|services)\/([^/]+)\/src\/(.*)$/.exec(url);
  if (ws) {
    // Generated protobuf code is worth its own line: encode/decode of whole runs is a suspect.
    if (ws[1] === 'packages' && ws[2] === 'proto') return '@stageline/proto (encode/decode)';
    return ws[1] === 'packages' ? `@stageline/${ws[2]}` : `${ws[2]} (own code)`;
  }
  if (url.startsWith('node:')) return 'node (core)';
  return url.replace(/^file:\/\//, '');
}

export interface ProfileSummary {
  file: string;
  totalMs: number;
  /** Time the process was busy (not idle). */
  busyMs: number;
  byModule: { module: string; ms: number; share: number }[];
  topFunctions: { fn: string; module: string; selfMs: number }[];
}

export function summarizeProfile(file: string, top = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    // timeDeltas[i] is the time before sample i; attribute the following delta to the sample.
    const delta = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    const id = profile.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + delta);
  }
  const modules = new Map<string, number>();
  const functions = new Map<string, { fn: string; module: string; selfMs: number }>();
  let total = 0;
  let idle = 0;
  for (const [id, ms] of self) {
    const node = byId.get(id);
    if (!node) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    const module = moduleOf(url, functionName);
    total += ms;
    if (module === '(idle)') {
      idle += ms;
      continue;
    }
    modules.set(module, (modules.get(module) ?? 0) + ms);
    const fn = `${functionName || '(anonymous)'} ${url.split('/').slice(-2).join('/')}:${lineNumber + 1}`;
    const entry = functions.get(fn) ?? { fn, module, selfMs: 0 };
    entry.selfMs += ms;
    functions.set(fn, entry);
  }
  const busy = total - idle;
  return {
    file,
    totalMs: total,
    busyMs: busy,
    byModule: [...modules]
      .map(([module, ms]) => ({ module, ms, share: busy > 0 ? ms / busy : 0 }))
      .sort((a, b) => b.ms - a.ms),
    topFunctions: [...functions.values()].sort((a, b) => b.selfMs - a.selfMs).slice(0, top),
  };
}

/** Every .cpuprofile under a directory. */
export function profilesIn(dir: string): string[] {
  try {
    return readdirSync(dir)
      .filter((f) => f.endsWith('.cpuprofile'))
      .map((f) => join(dir, f));
  } catch {
    return [];
  }
}

export function renderProfile(s: ProfileSummary, modules = 12): string {
  const lines = [
    `profile ${s.file}: busy ${(s.busyMs / 1000).toFixed(2)} s of ${(s.totalMs / 1000).toFixed(2)} s`,
    '  self time by module:',
    ...s.byModule
      .slice(0, modules)
      .map(
        (m) => `    ${(m.share * 100).toFixed(1).padStart(5)}%  ${(m.ms / 1000).toFixed(2).padStart(6)} s  ${m.module}`,
      ),
    '  hottest functions (self):',
    ...s.topFunctions.map((f) => `    ${(f.selfMs / 1000).toFixed(2).padStart(6)} s  ${f.fn}  [${f.module}]`),
  ];
  return lines.join('\n');
}

// `node test/bench/lib/profile.ts <file-or-dir>…`: print the summaries.
if (import.meta.main) {
  for (const arg of process.argv.slice(2)) {
    const files = arg.endsWith('.cpuprofile') ? [arg] : profilesIn(arg);
    for (const f of files) console.log(renderProfile(summarizeProfile(f)));
  }
}

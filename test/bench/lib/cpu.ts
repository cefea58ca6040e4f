// pidstat-like CPU accounting from /proc: user+system time of a process (and of its reaped children,
// e.g. buildah or podman runs), sampled before and after a measurement.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let ticks: number | undefined;
function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

/** CPU seconds used so far by `pid` (self + reaped children); undefined once it has gone. */
export function cpuSeconds(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces: fields are counted after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17.
  const [utime, stime, cutime, cstime] = [11, 12, 13, 14].map((i) => Number(fields[i] ?? 0));
  return (utime! + stime! + cutime! + cstime!) / clockTicks();
}

/** Pids whose command name (/proc/<pid>/comm) is `comm`: the shared servers (nats-server, postgres). */
export function pidsNamed(comm: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === comm) pids.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

export interface CpuTarget {
  name: string;
  /** Re-evaluated at each sample (postgres forks a backend per connection). */
  pids(): number[];
}

export interface CpuSample {
  at: number;
  seconds: Map<string, number>;
}

/** CPU seconds the whole machine has been busy (all cores, /proc/stat): others' work shows up here too. */
export function machineBusySeconds(): number {
  const first = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  // cpu  user nice system idle iowait irq softirq steal guest guest_nice
  const [user, nice, system, , , irq, softirq, steal] = first.trim().split(/\s+/).slice(1).map(Number);
  return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0)) / clockTicks();
}

/** The name under which samples carry the machine's total (every process, ours and others'). */
export const MACHINE = 'machine (all processes)';

export function sampleCpu(targets: readonly CpuTarget[]): CpuSample {
  const seconds = new Map<string, number>();
  for (const t of targets) {
    let sum = 0;
    for (const pid of t.pids()) sum += cpuSeconds(pid) ?? 0;
    seconds.set(t.name, sum);
  }
  seconds.set(MACHINE, machineBusySeconds());
  return { at: Date.now(), seconds };
}

/** CPU used between two samples, per target, in cores (1.0 = one core busy the whole time). */
export function cpuBetween(before: CpuSample, after: CpuSample): Record<string, { seconds: number; cores: number }> {
  const wall = Math.max(1, after.at - before.at) / 1000;
  const out: Record<string, { seconds: number; cores: number }> = {};
  for (const [name, end] of after.seconds) {
    // A postgres backend that exited between samples takes its time with it: never below zero.
    const seconds = Math.max(0, end - (before.seconds.get(name) ?? 0));
    out[name] = { seconds, cores: seconds / wall };
  }
  return out;
}

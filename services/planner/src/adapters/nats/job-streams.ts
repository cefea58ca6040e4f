import type { Bus } from '@stageline/bus';
import type { JobRole } from '../../domain/model.ts';

/** When the role's job stream was created (ms), or undefined while it is missing or the bus is away. */
export function jobStreamCreatedAt(bus: Bus): (role: JobRole) => Promise<number | undefined> {
  return async (role) => {
    const name = bus.subjects.streams[role === 'build' ? 'buildJobs' : 'deployJobs'];
    try {
      const info = await bus.jsm.streams.info(name);
      const created = Date.parse(info.created);
      return Number.isNaN(created) ? undefined : created;
    } catch {
      return undefined;
    }
  };
}

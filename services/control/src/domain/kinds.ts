import type { control } from '@stageline/proto';

// The wire values of the proto enums the domain decides on, without loading generated code
// (which pulls in grpc-js) into the pure core. `satisfies` keeps them in step with the protos.
export const Kind = {
  DATABASE: 1,
  LIFECYCLE_JOB: 2,
  CRON_JOB: 3,
  CONTAINER: 4,
  APPLICATION: 5,
} as const satisfies Record<string, control.ServiceKind>;
export type KindName = keyof typeof Kind;

export function kindName(kind: control.ServiceKind): KindName | undefined {
  return (Object.keys(Kind) as KindName[]).find((k) => Kind[k] === kind);
}

export const Scheduling = { PIPELINED: 1, STRICT: 2 } as const satisfies Record<string, control.SchedulingMode>;
export const Mirror = { SERVICE: 1, SHARED: 2 } as const satisfies Record<string, control.MirrorMode>;
export const Engine = { POSTGRESQL: 1, MYSQL: 2, REDIS: 3, MONGODB: 4 } as const satisfies Record<
  string,
  control.DatabaseEngine
>;
export const DbMode = { CONTAINER: 1, MANAGED: 2 } as const satisfies Record<string, control.DatabaseMode>;
export const EnvStatus = { NEVER_DEPLOYED: 1, DELETED: 10 } as const satisfies Record<
  string,
  control.EnvironmentStatus
>;

/** Which default stage a kind lands in when added without a stage. */
export type DefaultSlot = 'DATABASE' | 'JOB' | 'CONTAINER' | 'APPLICATION';

export const DEFAULT_SLOTS: readonly DefaultSlot[] = ['DATABASE', 'JOB', 'CONTAINER', 'APPLICATION'];

export function defaultSlotOf(kind: KindName): DefaultSlot {
  switch (kind) {
    case 'DATABASE':
      return 'DATABASE';
    case 'LIFECYCLE_JOB':
    case 'CRON_JOB':
      return 'JOB';
    case 'CONTAINER':
      return 'CONTAINER';
    case 'APPLICATION':
      return 'APPLICATION';
  }
}

export const defaultStageName = (slot: DefaultSlot): string => `DEFAULT ${slot}`;

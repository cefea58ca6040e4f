import { type EntityManager, query } from '@stageline/db';
import type { control } from '@stageline/proto';
import type { EnvironmentAggregate } from '../../app/model.ts';
import type { DefaultSlot, KindName } from '../../domain/kinds.ts';
import type { ServiceDefinition } from '../../domain/service-spec.ts';
import { ENVIRONMENT_COLUMNS, environmentOfColumns, parsed } from './run-sql.ts';

// An environment aggregate read in one hand-written statement (the planner's snapshot of every run
// and every read of the API): the rows as JSON, parsed once, instead of three queries whose rows the
// ORM hydrated into entities to be copied again.

interface StageJson {
  id: string;
  name: string;
  description: string;
  default_for: string | null;
}

interface ServiceJson {
  id: string;
  stage_id: string;
  kind: string;
  skipped: boolean;
  definition: ServiceDefinition;
  secrets: Record<string, string>;
  has_resources: boolean;
  endpoints: control.Endpoint[];
  created_at: string;
  updated_at: string;
}

type AggregateColumns = Parameters<typeof environmentOfColumns>[0] & {
  stages: StageJson[] | string | null;
  services: ServiceJson[] | string | null;
};

/** The aggregate as the store's locked load has it (stages by position; services by position, then id). */
export async function readAggregate(
  em: EntityManager,
  environmentId: string,
): Promise<EnvironmentAggregate | undefined> {
  const rows = await query<AggregateColumns>(
    em,
    `select ${ENVIRONMENT_COLUMNS},
        (select json_agg(json_build_object('id', st.id, 'name', st.name, 'description', st.description,
                                           'default_for', st.default_for) order by st.position)
           from stage st where st.environment_id = e.id) as stages,
        (select json_agg(json_build_object('id', s.id, 'stage_id', s.stage_id, 'kind', s.kind, 'skipped', s.skipped,
                                           'definition', s.definition, 'secrets', s.secrets,
                                           'has_resources', s.has_resources, 'endpoints', s.endpoints,
                                           'created_at', s.created_at, 'updated_at', s.updated_at)
                         order by s.position, s.id)
           from service s where s.environment_id = e.id) as services
       from environment e where e.id = ?`,
    [environmentId],
  );
  const row = rows[0];
  if (row === undefined) return undefined;
  const stages = parsed(row.stages) ?? [];
  const services = parsed(row.services) ?? [];
  return {
    environment: environmentOfColumns(row),
    pipeline: {
      stages: stages.map((s) => ({
        id: s.id,
        name: s.name,
        description: s.description,
        defaultFor: s.default_for as DefaultSlot | null,
      })),
      services: services.map((s) => ({ id: s.id, kind: s.kind as KindName, stageId: s.stage_id })),
    },
    services: services.map((s) => ({
      id: s.id,
      definition: s.definition,
      secrets: s.secrets,
      skipped: s.skipped,
      hasResources: s.has_resources,
      endpoints: s.endpoints,
      createdAt: new Date(s.created_at),
      updatedAt: new Date(s.updated_at),
    })),
  };
}

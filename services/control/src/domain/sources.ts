import { failedPrecondition } from '@stageline/errors';
import { checkImageSource, checkSourceUrl, type SourcePolicy } from '@stageline/policy';
import type { ServiceDefinition } from './service-spec.ts';

// Where a service's definition points — git, image and chart URLs — against the operator's source
// policy (@stageline/policy). A refusal is FAILED_PRECONDITION: the value is well formed, the
// installation does not allow it; it names the field and the rule.

type Check = [field: string, problem: string | undefined];

function imageFields(field: string, image: string, policy: SourcePolicy): Check[] {
  return image === '' ? [] : [[field, checkImageSource(policy, image)]];
}

/** Every URL of a (normalized) definition with the source policy's verdict on it. */
function checks(definition: ServiceDefinition, policy: SourcePolicy, field: string): Check[] {
  const out: Check[] = [];
  const src = definition.source;
  switch (src.$case) {
    case 'container':
      out.push(...imageFields(`${field}.container.image`, src.value.image, policy));
      break;
    case 'application':
      out.push([`${field}.application.git_url`, checkSourceUrl(policy, src.value.gitUrl)]);
      break;
    case 'database':
      out.push(...imageFields(`${field}.database.image`, src.value.image, policy));
      break;
    case 'job':
      if (src.value.from?.$case === 'container')
        out.push(...imageFields(`${field}.job.container.image`, src.value.from.value.image, policy));
      if (src.value.from?.$case === 'application')
        out.push([`${field}.job.application.git_url`, checkSourceUrl(policy, src.value.from.value.gitUrl)]);
      break;
  }
  if (definition.chart?.source?.$case === 'repository') {
    out.push([`${field}.chart.repository.url`, checkSourceUrl(policy, definition.chart.source.value.url)]);
  }
  return out;
}

/** Throws FAILED_PRECONDITION naming the first field the source policy refuses. */
export function checkSources(definition: ServiceDefinition, policy: SourcePolicy, field = 'service'): void {
  for (const [name, problem] of checks(definition, policy, field)) {
    if (problem !== undefined) throw failedPrecondition(problem, name);
  }
}

// What a deploy job carries in secret travels sealed (packages/secrets): the service's secret env values
// and the values injected from earlier stages arrive sealed and are opened right before the job runs;
// the values a job hands to later stages (job outputs, database connection details) leave sealed.
import { bus, control } from '@stageline/proto';
import { openEnvVars, openValues, type Redact, redactor, type Secrets, sealValues } from '@stageline/secrets';
import type { JobContext } from './ports.ts';

/** The job with its secrets in clear; throws naming the variable when one cannot be opened. */
export function openDeployJob(secrets: Secrets, job: bus.DeployJob): bus.DeployJob {
  return {
    ...job,
    ...(job.service !== undefined
      ? { service: { ...job.service, envVars: openEnvVars(secrets, job.service.envVars) } }
      : {}),
    injectedEnv: openValues(secrets, job.injectedEnv),
  };
}

/** The outcome with every output sealed, as it goes on the bus. */
export function sealOutcome(secrets: Secrets, result: bus.JobFinished): bus.JobFinished {
  return Object.keys(result.outputs).length === 0
    ? result
    : { ...result, outputs: sealValues(secrets, result.outputs) };
}

/** What a job reports, with the job's secret values (and URL passwords) as "***". */
export function redactingContext(ctx: JobContext, redact: Redact): JobContext {
  return {
    jobId: ctx.jobId,
    deploymentId: ctx.deploymentId,
    serviceId: ctx.serviceId,
    attempt: ctx.attempt,
    signal: ctx.signal,
    log: ctx.log,
    output: (message, step) => ctx.output(redact(message), step),
    stepStarted: (kind, message) => ctx.stepStarted(kind, message === undefined ? undefined : redact(message)),
    stepFinished: (step) => ctx.stepFinished({ ...step, message: redact(step.message) }),
    working: () => ctx.working(),
    // The lease check of this delivery: wrapping must never lose it.
    ...(ctx.fence !== undefined ? { fence: () => ctx.fence!() } : {}),
  };
}

/** The job's secret values in clear: its secret env values and what earlier stages injected. */
function secretValuesOf(job: bus.DeployJob): string[] {
  return [
    ...(job.service?.envVars ?? []).filter((v) => v.secret).map((v) => v.value),
    ...Object.values(job.injectedEnv),
  ];
}

/**
 * Runs `handle` on the opened job with a context that redacts the job's secrets from every line and
 * step message, and seals what it hands on; a job whose secrets cannot be opened fails.
 */
export async function withSealedSecrets(
  secrets: Secrets,
  job: bus.DeployJob,
  ctx: JobContext,
  handle: (opened: bus.DeployJob, ctx: JobContext) => Promise<bus.JobFinished>,
): Promise<bus.JobFinished> {
  let opened: bus.DeployJob;
  try {
    opened = openDeployJob(secrets, job);
  } catch (e) {
    // A job this process can never run (its key is missing here): an outcome, not a redelivery.
    return bus.JobFinished.fromPartial({
      succeeded: false,
      state: control.ServiceState.SERVICE_STATE_DEPLOYMENT_ERROR,
      message: `the job's secrets cannot be opened: ${e instanceof Error ? e.message : String(e)}`,
    });
  }
  const redact = redactor(secretValuesOf(opened));
  const result = await handle(opened, redactingContext(ctx, redact));
  return sealOutcome(secrets, { ...result, message: redact(result.message) });
}

// A build job carries the service's secret env values sealed (packages/secrets): they are opened here,
// right before the job runs, and live only in this process's memory (build args, the redactor).
import type { bus } from '@stageline/proto';
import { openEnvVars, type Secrets } from '@stageline/secrets';

/** The job with its secret env values in clear; throws naming the variable when one cannot be opened. */
export function openBuildJob(secrets: Secrets, job: bus.BuildJob): bus.BuildJob {
  if (job.service === undefined) return job;
  return { ...job, service: { ...job.service, envVars: openEnvVars(secrets, job.service.envVars) } };
}

// @stageline/telemetry: what operators see inside Stageline — its Prometheus metrics.
export {
  metrics,
  type OutboxSource,
  registry,
  type SlotSource,
  scrape,
  secondsSince,
  startProcessMetrics,
  subjectFamily,
  trackOutbox,
  trackQueues,
  trackSlots,
} from './metrics.ts';

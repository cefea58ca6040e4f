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
  trackSlots,
} from './metrics.ts';

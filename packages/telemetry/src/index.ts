// @stageline/telemetry: what operators see inside Stageline — its Prometheus metrics.
export {
  metrics,
  registry,
  type SlotSource,
  scrape,
  secondsSince,
  startProcessMetrics,
  subjectFamily,
  trackSlots,
} from './metrics.ts';

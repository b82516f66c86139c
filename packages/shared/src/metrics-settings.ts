/**
 * How often prom-client's event-loop lag histogram (nodejs_eventloop_lag_p50/p99…) takes a sample,
 * in every API and worker process. Each sample is a wake-up of an otherwise idle process: at
 * prom-client's default (10 ms) ~200 a second cost ~2 ms of CPU per second, at 1 s it was still
 * the largest single item of an idle node (docs/benchmark.md, issue 19). The gauge
 * nodejs_eventloop_lag_seconds is measured at each scrape and stays current.
 */
export const EVENT_LOOP_SAMPLE_MS = 5000;

// The load generator, always in a process of its own with the same settings for both sides, so that its share of
// the two cores is the same whichever server it drives. Reads a job (JSON file), prints one JSON result line.
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';

interface Job {
  url: string;
  path: string;
  headers: Record<string, string>;
  /** Request bodies, handed out round-robin across all connections. */
  bodies: string[];
  connections: number;
  seconds: number;
}

const job = JSON.parse(readFileSync(process.argv[2], 'utf8')) as Job;
let next = 0;
// autocannon times each response with process.hrtime (fractional milliseconds) but records it in a histogram of whole
// milliseconds (hdr-histogram, lowest discernible value 1): its p50 and p99 are whole numbers, and at 1-3 ms a
// difference of one is resolution, not a finding. Its per-response 'response' event carries the exact time, so every
// answered (2xx, as autocannon counts) response's time is kept here and the percentiles are read from all of them.
let times = new Float64Array(1 << 16);
let count = 0;
const run: any = autocannon({
  url: job.url,
  connections: job.connections,
  duration: job.seconds,
  requests: [
    {
      method: 'POST',
      path: job.path,
      headers: { 'content-type': 'application/json', ...job.headers },
      setupRequest: (request: any) => ({ ...request, body: job.bodies[next++ % job.bodies.length] }),
    },
  ],
});
run.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
  if (statusCode < 200 || statusCode >= 300) return;
  if (count === times.length) {
    const grown = new Float64Array(times.length * 2);
    grown.set(times);
    times = grown;
  }
  times[count++] = responseTime;
});
const result = await run;
const sorted = times.subarray(0, count).sort();
/** The nearest-rank percentile, in milliseconds (microsecond resolution). */
const percentile = (p: number) =>
  count === 0 ? 0 : Math.round(sorted[Math.min(count - 1, Math.ceil((p / 100) * count) - 1)] * 1000) / 1000;
process.stdout.write(
  `${JSON.stringify({
    rps: result.requests.average,
    total: result.requests.total,
    p50: percentile(50),
    p99: percentile(99),
    // autocannon's own figures (whole milliseconds), for comparison.
    autocannonP50: result.latency.p50,
    autocannonP99: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    // The load generator's own CPU time (user + system), in milliseconds, for the per-process table of bench/run.ts.
    cpuMs: (process.cpuUsage().user + process.cpuUsage().system) / 1000,
  })}\n`,
);

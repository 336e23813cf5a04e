/**
 * A Prometheus histogram observed with plain arithmetic and read by prom-client at scrape time.
 *
 * Why not prom-client's Histogram: its `observe()` builds a closure, a label object and a label
 * hash per call (~350 bytes and ~0.4 µs), and the registry observes once per catalog write, 100,000
 * times in a registration storm (docs/BENCHMARKS.md, "Registration storm": a few per cent of the
 * registry's CPU). This keeps one count per bucket, the sum and the count, and hands prom-client's
 * Registry the same values its Histogram's `get()` would (test/unit/hot-histogram.test.ts compares the
 * two expositions, with and without default labels), so the text format stays prom-client's. No labels.
 */
import type { Histogram, Registry } from "prom-client";

/** One value of prom-client's metric JSON (what its Registry formats). */
type MetricValue = { value: number; labels: Record<string, string | number>; metricName: string };

export class HotHistogram {
  readonly type = "histogram";
  readonly aggregator = "sum";
  private readonly bounds: readonly number[];
  /** Per bucket (not cumulative); the last one is +Inf. */
  private readonly counts: Float64Array;
  private sum = 0;
  private count = 0;

  constructor(
    readonly name: string,
    readonly help: string,
    buckets: readonly number[],
    registers: Registry[],
  ) {
    this.bounds = [...buckets].sort((a, b) => a - b);
    this.counts = new Float64Array(this.bounds.length + 1);
    // prom-client's Registry reads name, help, type, aggregator and get(): the shape of its own metrics.
    for (const r of registers) r.registerMetric(this as unknown as Histogram);
  }

  /** One value (prom-client's rule: a value lands in the first bucket whose bound is ≥ it). */
  observe(value: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && value > b[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  reset(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }

  /** What prom-client's Histogram.get() returns for a histogram without labels. */
  async get(): Promise<{ name: string; help: string; type: "histogram"; aggregator: "sum"; values: MetricValue[] }> {
    const bucket = `${this.name}_bucket`;
    const values: MetricValue[] = [];
    let acc = 0;
    this.bounds.forEach((le, i) => {
      acc += this.counts[i]!;
      values.push({ value: acc, labels: { le }, metricName: bucket });
    });
    values.push({ value: this.count, labels: { le: "+Inf" }, metricName: bucket });
    values.push({ value: this.sum, labels: {}, metricName: `${this.name}_sum` });
    values.push({ value: this.count, labels: {}, metricName: `${this.name}_count` });
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}

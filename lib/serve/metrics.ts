// The server's Prometheus metrics (prom-client, one registry per server): requests by route and status, latency
// histograms (total per route; queue, vision, prefill and decode from the Grounder's batch stats), batch sizes,
// generated tokens, queue depth, adapters loaded and on the device, the device's memory, and Node's process metrics.
//
// The batch stats come through the Grounder's onBatch, which is fixed when it loads: pass `metrics.onBatch` to
// Grounder.load, then the same ServeMetrics to startServer (lib/serve/serve.ts does both).
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { AdapterInfo } from '../engine/model.js';
import { native } from '../engine/native.js';
import type { BatchStats } from '../grounding/grounder.js';

/** What the gauges read at each scrape. */
export interface MetricsSource {
  pending: number;
  adapters(): AdapterInfo[];
}

interface DeviceMemory {
  available: boolean;
  allocated?: number;
  reserved?: number;
  peakAllocated?: number;
  /** The engine's host tensor cache (native/cpu_allocator.h): bytes handed out and freed bytes kept for reuse. */
  hostCache?: { live: number; cached: number; limit: number; hits: number; misses: number };
}

const SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const SIZES = [1, 2, 4, 8, 16, 32, 64, 128];

/**
 * The CUDA caching allocator's bytes and the host tensor cache's (native deviceMemory, no model lock: a scrape
 * never waits for a batch).
 */
export function deviceMemory(device: string): DeviceMemory {
  const addon = native() as unknown as { deviceMemory?: (device: string) => string };
  if (!addon.deviceMemory) return { available: false };
  try {
    return JSON.parse(addon.deviceMemory(device)) as DeviceMemory;
  } catch {
    return { available: false };
  }
}

export class ServeMetrics {
  readonly registry: Registry;
  private source: MetricsSource | null = null;
  private device = 'cpu';
  private readonly requests: Counter<'route' | 'status'>;
  private readonly latency: Histogram<'route'>;
  private readonly queue: Histogram;
  private readonly vision: Histogram;
  private readonly prefill: Histogram;
  private readonly decode: Histogram;
  private readonly batchSize: Histogram;
  private readonly batchAdapters: Histogram;
  private readonly tokens: Counter;
  private readonly batches: Counter;

  constructor(options: { registry?: Registry; processMetrics?: boolean } = {}) {
    const registers = [(this.registry = options.registry ?? new Registry())];
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry });
    this.requests = new Counter({ name: 'pigg_requests_total', help: 'HTTP requests by route and status (499: the client went away first)', labelNames: ['route', 'status'], registers });
    this.latency = new Histogram({ name: 'pigg_request_duration_seconds', help: 'Seconds from a request to its answer, by route', labelNames: ['route'], buckets: SECONDS, registers });
    this.queue = new Histogram({ name: 'pigg_queue_seconds', help: 'Seconds a grounding request waited before its batch started (image decoding included)', buckets: SECONDS, registers });
    this.vision = new Histogram({ name: 'pigg_vision_seconds', help: 'Seconds of the vision tower per batch (device-synchronized)', buckets: SECONDS, registers });
    this.prefill = new Histogram({ name: 'pigg_prefill_seconds', help: 'Seconds of the prompt prefill per batch (device-synchronized)', buckets: SECONDS, registers });
    this.decode = new Histogram({ name: 'pigg_decode_seconds', help: 'Seconds of the decode steps per batch (device-synchronized)', buckets: SECONDS, registers });
    this.batchSize = new Histogram({ name: 'pigg_batch_size', help: 'Rows per generate call', buckets: SIZES, registers });
    this.batchAdapters = new Histogram({ name: 'pigg_batch_adapters', help: 'Distinct adapters per generate call (the base model not counted)', buckets: [0, ...SIZES], registers });
    this.tokens = new Counter({ name: 'pigg_generated_tokens_total', help: 'Tokens generated (each answer up to and including its end token)', registers });
    this.batches = new Counter({ name: 'pigg_batches_total', help: 'Generate calls', registers });
    const metrics = this;
    new Gauge({
      name: 'pigg_queue_depth', help: 'Grounding requests queued or running', registers,
      collect() {
        this.set(metrics.source?.pending ?? 0);
      },
    });
    new Gauge({
      name: 'pigg_adapters', help: 'Adapters loaded (where="host": all of them; where="device": those with a copy on the device)', labelNames: ['where'], registers,
      collect() {
        const list = metrics.adaptersNow();
        this.set({ where: 'host' }, list.length);
        this.set({ where: 'device' }, list.filter((a) => a.onDevice).length);
      },
    });
    new Gauge({
      name: 'pigg_adapter_bytes', help: 'fp32 bytes of the adapters loaded', registers,
      collect() {
        this.set(metrics.adaptersNow().reduce((n, a) => n + a.bytes, 0));
      },
    });
    new Gauge({
      name: 'pigg_device_memory_bytes', help: 'Device memory of the CUDA caching allocator (kind: allocated, reserved, peak); absent on the CPU', labelNames: ['kind'], registers,
      collect() {
        const memory = deviceMemory(metrics.device);
        if (!memory.available) return;
        this.set({ kind: 'allocated' }, memory.allocated ?? 0);
        this.set({ kind: 'reserved' }, memory.reserved ?? 0);
        this.set({ kind: 'peak' }, memory.peakAllocated ?? 0);
      },
    });
    new Gauge({
      name: 'pigg_host_cache_bytes', help: "Host memory of the engine's tensor cache (kind: live, in tensors; cached, freed and kept for reuse; limit)", labelNames: ['kind'], registers,
      collect() {
        const cache = deviceMemory(metrics.device).hostCache;
        if (!cache) return;
        this.set({ kind: 'live' }, cache.live);
        this.set({ kind: 'cached' }, cache.cached);
        this.set({ kind: 'limit' }, cache.limit);
      },
    });
  }

  /** The Grounder (or anything with pending and adapters()) the gauges read, and its device. */
  attach(source: MetricsSource, device: string): void {
    this.source = source;
    this.device = device;
  }

  /** Grounder onBatch: pass it to Grounder.load. */
  readonly onBatch = (stats: BatchStats): void => {
    this.batches.inc();
    this.batchSize.observe(stats.size);
    this.batchAdapters.observe(stats.adapters);
    for (const s of stats.queueSeconds) this.queue.observe(s);
    this.vision.observe(stats.visionSeconds);
    this.prefill.observe(stats.prefillSeconds);
    this.decode.observe(stats.decodeSeconds);
    this.tokens.inc(stats.tokens);
  };

  request(route: string, status: number, seconds: number): void {
    this.requests.inc({ route, status: String(status) });
    this.latency.observe({ route }, seconds);
  }

  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  private adaptersNow(): AdapterInfo[] {
    try {
      return this.source?.adapters() ?? [];
    } catch {
      return []; // disposed while shutting down
    }
  }
}

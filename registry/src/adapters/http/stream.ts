import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerHookHandler } from "fastify";
import { Name, formatIssues } from "roster-schemas";
import { z } from "zod";
import { ChangeLog, type LoggedChange } from "../../core/change-log.js";
import { BadRequestError, TooManyClientStreamsError, TooManyStreamsError } from "../../errors.js";
import type { CatalogChange, CatalogReader } from "../store/catalog-memory.js";
import type { BodyCache, PublicFragments } from "./body-cache.js";
import { ErrorBody, docSchema } from "./openapi.js";
import { PublicInstance, publicInstance } from "./public-instance.js";
import type { CatalogInstance } from "roster-schemas";

/**
 * Live catalog changes over HTTP as server-sent events, for consumers that do not speak NATS
 * (and the dashboard). Each event's id is a catalog revision; a client that reconnects with
 * `Last-Event-ID` gets the changes it missed from a bounded in-memory ring, or a fresh
 * snapshot when the ring no longer reaches back that far.
 */
export interface StreamOptions {
  /** Changes kept per service for resuming (default 256). */
  ringSize?: number;
  /** Comment line sent on idle streams so proxies keep them open (default 15 s). */
  heartbeatMs?: number;
  /**
   * A client this far behind (bytes buffered for it, the first snapshot included) is dropped; it
   * resumes on reconnect (default 1 MiB).
   */
  maxBufferedBytes?: number;
  /** Event streams held open at most (default 10,000): each costs a socket and a listener. */
  maxOpen?: number;
  /** Event streams one client (its token's name, else its IP) may hold open (default 32). */
  maxPerClient?: number;
}

export interface StreamDeps extends StreamOptions {
  catalog: CatalogReader;
  requireLoaded: preHandlerHookHandler;
  /** Who is asking, for maxPerClient: a configured token's name, else the IP (http-auth.ts). */
  clientKey?: (request: FastifyRequest) => string;
  /** Snapshot bodies encoded once per revision and shared by every stream that starts at it. */
  bodies?: BodyCache;
  /** Per-instance encoded fragments: a service's snapshot after one change costs one encode. */
  fragments?: PublicFragments;
}

/** Bytes of a snapshot handed to the socket at a time: all an unread stream can hold of it. */
const SNAPSHOT_SLICE = 64 * 1024;

const ServiceParams = z.object({ name: Name }).strict();
const Revision = z.string().regex(/^\d{1,15}$/, { error: "expected a catalog revision (a non-negative integer)" });
const StreamQuery = z
  .object({ lastEventId: Revision.optional().meta({ description: "resume after this revision (as the Last-Event-ID header; for clients that cannot set it)" }) })
  .strict();
const StreamHeaders = z.object({ "last-event-id": Revision.optional().meta({ description: "resume after this revision (EventSource sends it on reconnect)" }) });

const PutEvent = z.object({ service: Name, id: Name, revision: z.number(), prevRevision: z.number(), instance: PublicInstance });
const DeleteEvent = z.object({ service: Name, id: Name, revision: z.number(), prevRevision: z.number() });
const ServiceSnapshot = z.object({ service: Name, revision: z.number(), known: z.boolean(), instances: z.array(PublicInstance) });
const CatalogSnapshot = z.object({
  revision: z.number(),
  services: z.array(z.object({ name: Name, revision: z.number(), instances: z.array(PublicInstance) })),
});

const EVENTS_DOC = (snapshot: string) =>
  "Server-sent events. Each event has `id:` = catalog revision, `event:` = `snapshot` | `put` | `delete`, `data:` = one JSON line. " +
  `\`snapshot\` data: ${snapshot}; \`put\` data: {service, id, revision, prevRevision, instance}; \`delete\` data: {service, id, revision, prevRevision}. ` +
  "On connect: the changes after Last-Event-ID if the registry still holds them, else a snapshot. Lines starting with ':' are keepalives.";

/** One SSE frame. JSON never contains a raw newline, so `data:` is one line. */
function frame(event: string, id: number, data: unknown): string {
  return `id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}

/** A snapshot frame around an already-encoded (shared) JSON body: no copy of the body. */
function snapshotFrame(id: number, json: Buffer): Buffer[] {
  return [Buffer.from(`id: ${id}\nevent: snapshot\ndata: `), json, Buffer.from("\n\n")];
}

function changeFrame(c: LoggedChange<CatalogInstance>): string {
  const base = { service: c.service, id: c.id, revision: c.revision, prevRevision: c.prevRevision };
  return c.record ? frame("put", c.revision, { ...base, instance: publicInstance(c.record) }) : frame("delete", c.revision, base);
}

function lastEventId(request: FastifyRequest): number | undefined {
  const q = StreamQuery.safeParse(request.query);
  if (!q.success) throw new BadRequestError(`invalid query: ${formatIssues(q.error).join("; ")}`);
  const h = StreamHeaders.safeParse({ "last-event-id": request.headers["last-event-id"] });
  if (!h.success) throw new BadRequestError(`invalid header: ${formatIssues(h.error).join("; ")}`);
  const raw = h.data["last-event-id"] ?? q.data.lastEventId;
  return raw === undefined ? undefined : Number(raw);
}

/** BodyCache key of the whole-catalog stream snapshot: never a service name (NAME_PATTERN). */
const STREAM_BODY_KEY = "*stream";

/** Registers GET /v1/services/:name/stream and GET /v1/stream; returns the change ring (for status and tests). */
export function registerStreamRoutes(app: FastifyInstance, deps: StreamDeps): ChangeLog<CatalogInstance> {
  const ring = new ChangeLog<CatalogInstance>(deps.ringSize ?? 256);
  const heartbeatMs = deps.heartbeatMs ?? 15_000;
  const maxBuffered = deps.maxBufferedBytes ?? 1 << 20;
  const maxOpen = deps.maxOpen ?? 10_000;
  const maxPerClient = deps.maxPerClient ?? 32;
  const open = new Set<() => void>();
  const perClient = new Map<string, number>();
  // Two slices in the socket at most stay within the allowance, however small it is configured.
  const slice = Math.min(SNAPSHOT_SLICE, Math.max(1024, Math.floor(maxBuffered / 2)));
  // Fields copied one by one, not `{ ...c, at }`: V8 gave each spread copy a hidden class (and
  // descriptor array) of its own, ~255 bytes more per held change (one per instance in a storm).
  const unsubscribe = deps.catalog.onChange((c) =>
    ring.record({ service: c.service, id: c.id, revision: c.revision, prevRevision: c.prevRevision, record: c.record, at: Date.now() }),
  );

  // Open streams would keep server.close() waiting forever: end them first.
  app.addHook("preClose", async () => {
    for (const end of [...open]) end();
  });
  app.addHook("onClose", async () => {
    unsubscribe();
  });

  /**
   * Hijacks the reply, writes `first`, then forwards every change `wanted` accepts. Every byte held
   * for the client counts against maxBufferedBytes, the first snapshot included: the snapshot (an
   * encoded body shared by every stream that starts at that revision) is handed to the socket one
   * slice at a time, as the client reads, and changes that arrive meanwhile wait behind it.
   */
  const serve = (request: FastifyRequest, reply: FastifyReply, first: Buffer[] | string, wanted: (c: CatalogChange) => boolean) => {
    // HEAD (added by fastify for every GET): the headers, not an endless empty stream.
    if (request.method === "HEAD") return reply.header("content-type", "text/event-stream; charset=utf-8").send();
    // Bounded like every other resource: a client that opens streams in a loop must not exhaust
    // the registry's sockets and memory. 503 + Retry-After: EventSource and proxies retry.
    if (open.size >= maxOpen) {
      void reply.header("retry-after", "5");
      throw new TooManyStreamsError(maxOpen);
    }
    // ... and no single client (token, else IP) may take the whole budget.
    const client = deps.clientKey?.(request) ?? `ip:${request.ip}`;
    const mine = perClient.get(client) ?? 0;
    if (mine >= maxPerClient) {
      void reply.header("retry-after", "5");
      throw new TooManyClientStreamsError(maxPerClient);
    }
    perClient.set(client, mine + 1);
    reply.hijack();
    const raw = reply.raw;
    raw.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache, no-transform",
      connection: "keep-alive",
      // nginx buffers responses unless told not to.
      "x-accel-buffering": "no",
    });
    let ended = false;
    const end = () => {
      if (ended) return;
      ended = true;
      clearInterval(heartbeat);
      stop();
      open.delete(end);
      const n = (perClient.get(client) ?? 1) - 1;
      if (n > 0) perClient.set(client, n);
      else perClient.delete(client);
      raw.off("drain", pump);
      queue.length = 0;
      if (!raw.writableEnded) raw.end();
    };
    // Snapshot parts not yet handed to the socket, then changes that arrived meanwhile.
    const queue: Buffer[] = typeof first === "string" ? [Buffer.from(first)] : [...first];
    let queued = 0;
    // Snapshot bytes are shared with other streams (not this client's own memory) until sliced.
    let ownQueued = 0;
    const held = () => raw.writableLength + ownQueued;
    const tooFar = () => {
      if (held() <= maxBuffered) return false;
      // A consumer that cannot keep up is dropped rather than buffered without bound; it
      // reconnects with Last-Event-ID and resumes (or gets a snapshot).
      request.log.warn({ buffered: held() }, "dropping a slow event-stream client");
      end();
      return true;
    };
    /** Hands queued bytes to the socket while it has room for another slice. */
    function pump(): void {
      while (!ended && queue.length > 0 && raw.writableLength < slice) {
        progressed = true;
        const head = queue[0]!;
        const part = head.length > slice ? head.subarray(0, slice) : head;
        if (part === head) queue.shift();
        else queue[0] = head.subarray(slice);
        if (queued > 0) {
          const own = Math.min(part.length, queued);
          queued -= own;
          ownQueued -= own;
        }
        raw.write(part);
      }
      tooFar();
    }
    const write = (chunk: string) => {
      if (ended) return;
      if (queue.length === 0) {
        raw.write(chunk);
        tooFar();
        return;
      }
      const b = Buffer.from(chunk);
      queue.push(b);
      queued += b.length;
      ownQueued += b.length;
      tooFar();
    };
    const stop = deps.catalog.onChange((c) => {
      if (wanted(c)) write(changeFrame(c));
    });
    // A stream still owing part of its snapshot that read nothing for a whole heartbeat period is
    // dropped: it would otherwise pin that revision's snapshot body for as long as it stays open.
    let progressed = true;
    const heartbeat = setInterval(() => {
      if (queue.length > 0 && !progressed) {
        request.log.warn({ buffered: held() }, "dropping an event-stream client that stopped reading its snapshot");
        return end();
      }
      progressed = false;
      write(": keepalive\n\n");
    }, heartbeatMs);
    heartbeat.unref();
    open.add(end);
    raw.once("close", end);
    raw.once("error", end);
    raw.on("drain", pump);
    // Retry quickly after a registry restart; the browser adds Last-Event-ID itself.
    raw.write("retry: 2000\n\n");
    pump();
  };

  app.get(
    "/v1/services/:name/stream",
    {
      preHandler: deps.requireLoaded,
      schema: docSchema({
        summary: "Stream one service's changes (server-sent events)",
        description: EVENTS_DOC("{service, revision, known, instances}"),
        tags: ["stream"],
        params: ServiceParams,
        querystring: StreamQuery,
        headers: StreamHeaders,
        response: {
          200: { description: "an endless text/event-stream", contentType: "text/event-stream", schema: z.union([ServiceSnapshot, PutEvent, DeleteEvent]) },
          400: ErrorBody,
          503: { description: "catalog not loaded yet (ROSTER_NOT_READY), or streams.maxOpen streams open (ROSTER_TOO_MANY_STREAMS)", schema: ErrorBody },
        },
      }),
    },
    async (request, reply) => {
      const p = ServiceParams.safeParse(request.params);
      if (!p.success) throw new BadRequestError(`invalid path: ${formatIssues(p.error).join("; ")}`);
      const name = p.data.name;
      const after = lastEventId(request);
      const view = deps.catalog.serviceRevision(name);
      const replay = after === undefined ? null : ring.since(name, after, view.revision);
      const body = (): Buffer => {
        const head = JSON.stringify({ service: name, revision: view.revision, known: view.known, instances: [] }).slice(0, -3);
        const instances = deps.fragments ? deps.fragments.body(name, () => true) : Buffer.from(JSON.stringify(deps.catalog.service(name).instances.map(publicInstance)));
        return Buffer.concat([Buffer.from(head), instances, Buffer.from("}")]);
      };
      const first = replay
        ? replay.map(changeFrame).join("")
        : snapshotFrame(view.revision, deps.bodies ? deps.bodies.getEncoded(name, view.revision, "stream", body) : body());
      return serve(request, reply, first, (c) => c.service === name);
    },
  );

  app.get(
    "/v1/stream",
    {
      preHandler: deps.requireLoaded,
      schema: docSchema({
        summary: "Stream every service's changes (server-sent events)",
        description: EVENTS_DOC("{revision, services: [{name, revision, instances}]}"),
        tags: ["stream"],
        querystring: StreamQuery,
        headers: StreamHeaders,
        response: {
          200: { description: "an endless text/event-stream", contentType: "text/event-stream", schema: z.union([CatalogSnapshot, PutEvent, DeleteEvent]) },
          400: ErrorBody,
          503: { description: "catalog not loaded yet (ROSTER_NOT_READY), or streams.maxOpen streams open (ROSTER_TOO_MANY_STREAMS)", schema: ErrorBody },
        },
      }),
    },
    async (request, reply) => {
      const after = lastEventId(request);
      const services = deps.catalog.services();
      const revision = deps.catalog.revision;
      const replay = after === undefined ? null : ring.sinceAll(after, services, revision);
      const body = () => ({
        revision,
        services: services.map((s) => ({ name: s.name, revision: s.revision, instances: [...s.instances].sort((a, b) => a.id.localeCompare(b.id)).map(publicInstance) })),
      });
      // Encoded once per catalog revision however many streams start at it (a flood of them did
      // cost one copy each: ~10 MiB per client for a large catalog).
      const first = replay
        ? replay.map(changeFrame).join("")
        : snapshotFrame(revision, deps.bodies ? deps.bodies.get(STREAM_BODY_KEY, revision, "", body) : Buffer.from(JSON.stringify(body())));
      return serve(request, reply, first, () => true);
    },
  );

  return ring;
}

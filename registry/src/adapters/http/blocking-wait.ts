// Blocking queries (`?index=&wait=`), shared by the HTTP API and the Consul-compatible API: the
// jitter that spreads a herd of watchers, and a wait that ends when its caller goes away or the
// server closes (an abandoned long poll must not hold a listener or a timer until its wait ends).
import type { FastifyReply } from "fastify";

/** Consul's jitter: up to wait/16 added, so watchers woken together do not all come back together. */
export const defaultJitter = (waitMs: number): number => Math.floor(Math.random() * (waitMs / 16));

/** Runs `wait` with a signal aborted when the reply's socket closes unanswered or `closing` aborts. */
export async function waitWhileListening<T>(reply: FastifyReply, closing: AbortSignal, wait: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const gone = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableEnded) gone.abort();
  };
  reply.raw.once("close", onClose);
  const onClosing = () => gone.abort();
  closing.addEventListener("abort", onClosing, { once: true });
  try {
    return await wait(gone.signal);
  } finally {
    reply.raw.off("close", onClose);
    closing.removeEventListener("abort", onClosing);
  }
}

import { createHash } from 'node:crypto';
import fp from 'fastify-plugin';
import { createIdempotencyStore, type Answer, type IdempotencyRecord } from '../idempotency/idempotency-store.js';

/** What a `replayInHandler` route keeps: a JSON body and, if any, the stored document it is read from. */
export type KeptAnswer = Pick<Answer, 'body' | 'document'>;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route honours an Idempotency-Key header. */
    idempotent?: boolean;
    /**
     * The route answers with decrypted values: what is kept is the handler's `idempotencyRecord`
     * (no plaintext), and a retry's handler answers from it (`idempotencyReplay`) after its own
     * checks, under the caller's grants at that time.
     */
    replayInHandler?: boolean;
  }
  interface FastifyRequest {
    idempotencyId: string | undefined;
    /**
     * The same for every attempt of one request (its Idempotency-Key and its body): what a handler
     * creates can be named from it, so a retry after an answer lost to a failure finds what the
     * first attempt made instead of making it twice.
     */
    idempotencySeed: string | undefined;
    /** With `replayInHandler`: what the first attempt kept, for the handler to answer from. */
    idempotencyReplay: KeptAnswer | undefined;
    /** With `replayInHandler`: what the handler asks to keep in place of its answer. */
    idempotencyRecord: KeptAnswer | undefined;
  }
}

export default fp(
  async (app) => {
    const store = createIdempotencyStore({
      collection: app.mongo.client.db(app.config.keyVault.db).collection<IdempotencyRecord>('__idempotency', {
        writeConcern: { w: 'majority', journal: true },
      }),
      ttlMs: app.config.idempotencyTtlMs,
      pendingMs: app.config.requestTimeoutMs + 5_000,
    });
    app.decorateRequest('idempotencyId', undefined);
    app.decorateRequest('idempotencySeed', undefined);
    app.decorateRequest('idempotencyReplay', undefined);
    app.decorateRequest('idempotencyRecord', undefined);
    app.addHook('onClose', async () => store.close());

    app.addHook('preHandler', async (request, reply) => {
      const key = request.headers['idempotency-key'];
      if (request.routeOptions.config.idempotent !== true || typeof key !== 'string') return;
      const id = [request.principal?.clientId ?? 'anonymous', request.method, request.url.split('?')[0], key].join('|');
      // The hash covers what the request asks for, so a different request under the same key is caught.
      const hash = createHash('sha256').update(JSON.stringify([request.params, request.body])).digest('hex');
      const claim = await store.claim(id, hash);
      if (claim.kind === 'replay') {
        // A refusal holds no values and is sent as it was; a success is the handler's to answer.
        if (request.routeOptions.config.replayInHandler === true && claim.status < 300) {
          request.idempotencyReplay = { body: claim.body, ...(claim.document === undefined ? {} : { document: claim.document }) };
          return;
        }
        return reply.code(claim.status).type(claim.contentType).header('idempotent-replayed', 'true').send(claim.body);
      }
      request.idempotencyId = id;
      request.idempotencySeed = createHash('sha256').update(`${id}\n${hash}`).digest('hex');
    });

    app.addHook('onSend', async (request, reply, payload) => {
      const id = request.idempotencyId;
      if (id === undefined) return payload;
      request.idempotencyId = undefined;
      try {
        const replayInHandler = request.routeOptions.config.replayInHandler === true;
        // The handler's record says its write is done, whatever became of the answer after it (a
        // failed read, an audit refusal): a retry is answered from it, never written again. Never
        // the answer itself: it holds decrypted values, and MongoDB must not.
        if (replayInHandler && request.idempotencyRecord !== undefined) await store.complete(id, { status: 200, contentType: 'application/json', ...request.idempotencyRecord });
        // Server-side failures are forgotten so a retry runs again; answers (2xx, 4xx) are kept.
        else if (reply.statusCode >= 500 || reply.statusCode === 429 || typeof payload !== 'string') await store.release(id);
        else if (replayInHandler && reply.statusCode < 300) await store.release(id);
        else await store.complete(id, { status: reply.statusCode, contentType: String(reply.getHeader('content-type') ?? 'application/json'), body: payload });
      } catch (err) {
        request.log.error({ err }, 'idempotency record not updated');
      }
      return payload;
    });
  },
  { name: 'idempotency', dependencies: ['config', 'mongodb', 'auth'] },
);

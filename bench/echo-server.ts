/**
 * W1's baseline: a plain Fastify server with POST /encrypt and POST /decrypt registered with the
 * exact request and response JSON schemas of the real routes (imported from schemas/http/), whose
 * handlers only echo a fixed answer of the same shape and size. No auth, no crypto, no database.
 *
 *   HOST=127.0.0.1 PORT=8090 node --import tsx bench/echo-server.ts
 */
import Fastify from 'fastify';
import { decryptBodySchema, decryptResponseSchema, encryptBodySchema, encryptResponseSchema, formatQuerySchema } from '../schemas/http/crypto.js';
import { sharedSchemas } from '../schemas/http/common.js';

const maxBatchItems = Number(process.env.MAX_BATCH_ITEMS ?? 10000);
// What a real single-value answer looks like: a 4111-… string, deterministic, is 98 bytes of payload.
const ciphertext = Buffer.alloc(98, 7).toString('base64');

type Item = { reference?: string; value?: unknown; ciphertext?: string };

const app = Fastify({ logger: false, bodyLimit: Number(process.env.BODY_LIMIT_BYTES ?? 1048576) });
for (const schema of sharedSchemas) app.addSchema(schema);

app.post(
  '/encrypt',
  { schema: { body: encryptBodySchema(maxBatchItems), response: { 200: encryptResponseSchema } } },
  async (request) => {
    const body = request.body as Item & { items?: Item[] };
    if (body.items === undefined) return { ciphertext };
    return { items: body.items.map((i) => (i.reference === undefined ? { ciphertext } : { reference: i.reference, ciphertext })) };
  },
);

app.post(
  '/decrypt',
  { schema: { querystring: formatQuerySchema, body: decryptBodySchema(maxBatchItems), response: { 200: decryptResponseSchema } } },
  async (request) => {
    const body = request.body as Item & { items?: Item[] };
    if (body.items === undefined) return { value: '4111-1111-1111-1111' };
    return { items: body.items.map((i) => (i.reference === undefined ? { value: '4111-1111-1111-1111' } : { reference: i.reference, value: '4111-1111-1111-1111' })) };
  },
);

app.get('/health/ready', async () => ({ status: 'ok' }));

await app.listen({ host: process.env.HOST ?? '127.0.0.1', port: Number(process.env.PORT ?? 8090) });
process.on('SIGTERM', () => void app.close().then(() => process.exit(0)));

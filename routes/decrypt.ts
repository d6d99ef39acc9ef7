import type { FastifyInstance } from 'fastify';
import { decryptBodySchema, decryptResponseSchema, formatQuerySchema } from '../schemas/http/crypto.js';
import { commonErrors, errorResponses } from '../schemas/http/common.js';
import { toEjson, type EjsonFormat } from '../src/ejson.js';
import { batchItems } from './item-results.js';

type DecryptBody = { ciphertext: string } | { items: { ciphertext: string; reference?: string }[] };

export default async function decryptRoutes(app: FastifyInstance) {
  app.post(
    '/decrypt',
    {
      config: { scope: 'decrypt', audit: 'crypto.decrypt', readOnly: true },
      schema: {
        tags: ['crypto'],
        summary: 'Decrypt a CSFLE ciphertext, or a batch; every failure gives the same DECRYPTION_FAILED',
        security: [{ bearerAuth: [] }],
        querystring: formatQuerySchema,
        body: decryptBodySchema(app.config.maxBatchItems),
        response: { 200: decryptResponseSchema, ...errorResponses(...commonErrors, 403, 429) },
      },
    },
    async (request) => {
      const body = request.body as DecryptBody;
      const { format } = request.query as { format: EjsonFormat };
      const access = { ...request.caller!, purpose: { kind: 'decrypt' as const } };
      if (!('items' in body)) {
        const [result] = (await app.encryption.decrypt([Buffer.from(body.ciphertext, 'base64')], access)).results;
        if (!result!.ok) throw result!.error;
        return { value: toEjson(result!.value, format) };
      }
      const payloads = body.items.map((i) => Buffer.from(i.ciphertext, 'base64'));
      const { results } = await app.encryption.decrypt(payloads, access);
      return {
        items: batchItems(
          results,
          body.items.map((i) => i.reference),
          'value',
          (v) => toEjson(v, format),
        ),
      };
    },
  );
}

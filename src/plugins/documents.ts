import fp from 'fastify-plugin';
import { createDocumentsService, type DocumentsService } from '../documents/documents-service.js';
import { createKeyRotations, type RotationRecord } from '../documents/key-rotations.js';
import { createViewCheck } from '../documents/view-check.js';

declare module 'fastify' {
  interface FastifyInstance {
    documents: DocumentsService;
  }
}

/**
 * How long an instance trusts its last look at whether a namespace is a view: one listCollections
 * per namespace per period, and a namespace turned into a view is refused within it.
 */
const VIEW_CHECK_TTL_MS = 5000;

/** Documents with schema-driven encryption, served from the live collection schemas (plugins/schemas.ts). */
export default fp(
  async (app) => {
    const { config, keyVault } = app;
    const rotations = createKeyRotations(
      app.mongo.client.db(config.keyVault.db).collection<RotationRecord>('__rotations', { writeConcern: { w: 'majority', journal: true } }),
      { recordChange: (namespace) => app.fleet.record('schema', namespace), trusted: app.fleet.trusted },
    );
    // A rotation started or finished through another instance: writes here switch keys within the feed's bound.
    app.fleet.on('schema', () => rotations.forget());
    app.fleet.onReset(() => rotations.forget());
    app.decorate(
      'documents',
      createDocumentsService({
        client: app.mongo.client,
        schemas: app.schemaRegistry,
        engine: app.encryption,
        resolveAltNames: (names) => keyVault.resolveAltNames(names),
        rotations,
        maxFindLimit: config.maxFindLimit,
        maxTimeMs: config.requestTimeoutMs,
        views: createViewCheck({
          async collectionType(db, collection) {
            const [info] = await app.mongo.client.db(db).listCollections({ name: collection }, { nameOnly: false }).toArray();
            return info?.type;
          },
          ttlMs: VIEW_CHECK_TTL_MS,
        }),
      }),
    );
  },
  { name: 'documents', dependencies: ['config', 'mongodb', 'fleet', 'key-vault', 'encryption', 'schemas'] },
);

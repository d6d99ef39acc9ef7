import fp from 'fastify-plugin';
import { createDocumentsService, type DocumentsService } from '../documents/documents-service.js';
import { createKeyRotations, type RotationRecord } from '../documents/key-rotations.js';

declare module 'fastify' {
  interface FastifyInstance {
    documents: DocumentsService;
  }
}

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
      }),
    );
  },
  { name: 'documents', dependencies: ['config', 'mongodb', 'fleet', 'key-vault', 'encryption', 'schemas'] },
);

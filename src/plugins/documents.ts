import fp from 'fastify-plugin';
import { UUID } from 'mongodb';
import { createDocumentsService, type DocumentsService } from '../documents/documents-service.js';
import { createSchemaRegistry, readSchemaDirectory, resolveSchemaKeys, type SchemaRegistry } from '../documents/schema-registry.js';
import { createKeyRotations, type RotationRecord } from '../documents/key-rotations.js';
import { keyIdToString } from '../key-vault/key-document.js';

declare module 'fastify' {
  interface FastifyInstance {
    documents: DocumentsService;
    /** The current collection schemas and the data keys they name. */
    schemaRegistry: SchemaRegistry;
  }
}

/** Collection schemas are read and checked at boot; a bad one stops the service with its file name. */
export default fp(
  async (app) => {
    const { config, keyVault } = app;
    const schemas = readSchemaDirectory(config.schemas.dir, {
      required: config.schemas.required,
      keyVaultNamespace: `${config.keyVault.db}.${config.keyVault.collection}`,
      internalNamespaces: [`${config.keyVault.db}.${config.keyVault.trashCollection}`, `${config.clients.db}.${config.clients.collection}`, ...['', '.heads', '.checkpoints'].map((s) => `${config.audit.db}.${config.audit.collection}${s}`)],
    });
    await resolveSchemaKeys(schemas, {
      async idsByAltName(names) {
        const ids = new Map<string, string>();
        for (const name of names) {
          const doc = await keyVault.findByAltName(name);
          if (doc !== null) ids.set(name, keyIdToString(doc._id.buffer));
        }
        return ids;
      },
      async existingIds(ids) {
        const found = await keyVault.listKeys({ limit: ids.length, selector: { keyIds: ids.map((id) => new UUID(id)) } });
        return new Set(found.map((doc) => keyIdToString(doc._id.buffer)));
      },
    });
    const rotations = createKeyRotations(
      app.mongo.client.db(config.keyVault.db).collection<RotationRecord>('__rotations', { writeConcern: { w: 'majority', journal: true } }),
      { recordChange: (namespace) => app.fleet.record('schema', namespace), trusted: app.fleet.trusted },
    );
    // A rotation started or finished through another instance: writes here switch keys within the feed's bound.
    app.fleet.on('schema', () => rotations.forget());
    app.fleet.onReset(() => rotations.forget());
    app.decorate('schemaRegistry', createSchemaRegistry(schemas));
    app.decorate(
      'documents',
      createDocumentsService({
        client: app.mongo.client,
        schemas,
        engine: app.encryption,
        resolveAltNames: (names) => keyVault.resolveAltNames(names),
        rotations,
        maxFindLimit: config.maxFindLimit,
        maxTimeMs: config.requestTimeoutMs,
      }),
    );
    if (schemas.length > 0) app.log.info({ collections: schemas.map((s) => s.namespace) }, 'collection schemas loaded');
  },
  { name: 'documents', dependencies: ['config', 'mongodb', 'fleet', 'key-vault', 'encryption'] },
);

import { setTimeout as sleep } from 'node:timers/promises';
import fp from 'fastify-plugin';
import { UUID } from 'mongodb';
import type { KeysFound, NamespaceRules } from '../documents/collection-schema.js';
import { createSchemaAdmin, type SchemaAdmin } from '../documents/schema-admin.js';
import { readSchemaDirectory } from '../documents/schema-files.js';
import { createSchemaRegistry, type SchemaRegistry } from '../documents/schema-registry.js';
import { createSchemaStore, type CurrentSchemaDocument, type SchemaVersionDocument } from '../documents/schema-store.js';
import { keyIdToString } from '../key-vault/key-document.js';

const WARN_EVERY_MS = 30_000;

declare module 'fastify' {
  interface FastifyInstance {
    /** Every collection schema this instance serves, ready or not (`list()`, `require(ns)`). */
    schemaRegistry: SchemaRegistry;
    /** Changing collection schemas at run time (the /schemas routes). */
    schemaAdmin: SchemaAdmin;
  }
}

/**
 * Collection schemas: files in SCHEMAS_DIR are checked at boot (a bad one stops the service with
 * its file name) and imported into the store; the store, beside the key vault, is what every
 * instance serves, following changes through the fleet's change feed.
 */
/** How long the boot waits for the first load of the collection schemas. */
const FIRST_LOAD_WAIT_MS = 15_000;

export default fp(
  async (app) => {
    const { config, keyVault, fleet } = app;
    const rules: NamespaceRules = {
      keyVaultNamespace: `${config.keyVault.db}.${config.keyVault.collection}`,
      internalNamespaces: [`${config.keyVault.db}.${config.keyVault.trashCollection}`, `${config.clients.db}.${config.clients.collection}`, ...['', '.heads', '.checkpoints'].map((s) => `${config.audit.db}.${config.audit.collection}${s}`)],
    };
    const files = readSchemaDirectory(config.schemas.dir, { ...rules, required: config.schemas.required });

    // Schemas decide what is encrypted: never read stale, never lost on failover.
    const concerns = { readConcern: { level: 'majority' }, writeConcern: { w: 'majority', journal: true } } as const;
    const db = app.mongo.keyVaultClient.db(config.keyVault.db);
    const store = createSchemaStore({
      current: db.collection<CurrentSchemaDocument>('__schemas', concerns),
      versions: db.collection<SchemaVersionDocument>('__schemaVersions', concerns),
      lock: (name, fn) => app.fleetLock(name, fn),
    });

    /** Straight from the key vault (not its caches): a key created through another instance is seen. */
    async function findKeys(altNames: string[], ids: string[]): Promise<KeysFound> {
      const idsByAltName = new Map<string, string>();
      const existingIds = new Set<string>();
      const wanted = new Set(altNames);
      if (altNames.length > 0) {
        for (const doc of await keyVault.listKeys({ limit: altNames.length, selector: { keyAltNames: altNames } })) {
          const id = keyIdToString(doc._id.buffer);
          existingIds.add(id);
          for (const name of doc.keyAltNames ?? []) if (wanted.has(name)) idsByAltName.set(name, id);
        }
      }
      if (ids.length > 0) {
        for (const doc of await keyVault.listKeys({ limit: ids.length, selector: { keyIds: ids.map((id) => new UUID(id)) } })) existingIds.add(keyIdToString(doc._id.buffer));
      }
      return { idsByAltName, existingIds };
    }

    const warned = new Map<string, number>();
    const registry = createSchemaRegistry({
      store,
      findKeys,
      // Files first: a file changed since the last start wins over what the store holds.
      async beforeFirstLoad() {
        for (const file of files) {
          const { written, doc } = await store.importFile(file.namespace, { ...file, source: 'file', updatedBy: `file:${file.file}` });
          if (!written) continue;
          await fleet.record('schema', file.namespace);
          app.log.info({ ns: file.namespace, version: doc.version, file: file.file }, 'collection schema imported from its file');
        }
      },
      // Retried every second while the database is away: one line per problem per half minute.
      onError: (err, what) => {
        const now = Date.now();
        if (now - (warned.get(what) ?? Number.NEGATIVE_INFINITY) < WARN_EVERY_MS) return;
        warned.set(what, now);
        app.log.warn({ err }, what);
      },
      onStatus: (entry) => {
        if (entry.status === 'ready') app.log.info({ ns: entry.namespace, version: entry.version, source: entry.source }, 'collection schema served');
        else app.log.warn({ ns: entry.namespace, version: entry.version, missingKeys: entry.missingKeys }, 'collection schema not ready: it names data keys that do not exist');
      },
    });
    // Changed through another instance; a data key created, deleted or renamed; the feed reset.
    fleet.on('schema', (ns) => void registry.changed(ns).catch((err: unknown) => app.log.warn({ err, ns }, 'collection schema not read yet; retrying')));
    fleet.on('key', () => void registry.keysChanged());
    fleet.onReset(() => registry.reset());
    // The first requests find the schemas loaded: the boot waits for the first load, but only so
    // long: the service may start while the database is briefly away, and then /documents and
    // readiness wait for the load that goes on in the background (503 DATABASE_UNAVAILABLE meanwhile).
    app.addHook('onReady', async () => {
      registry.start();
      await Promise.race([registry.whenLoaded().catch(() => undefined), sleep(FIRST_LOAD_WAIT_MS, undefined, { ref: false })]);
    });
    app.addHook('onClose', async () => registry.stop());

    app.decorate('schemaRegistry', registry);
    app.decorate(
      'schemaAdmin',
      createSchemaAdmin({ store, registry, rules, findKeys, recordChange: (ns) => fleet.record('schema', ns) }),
    );
  },
  { name: 'schemas', dependencies: ['config', 'mongodb', 'fleet', 'key-vault'] },
);

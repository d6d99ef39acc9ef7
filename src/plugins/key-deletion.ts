import fp from 'fastify-plugin';
import { createKeyDeletion, type KeyDeletion } from '../documents/key-deletion.js';

declare module 'fastify' {
  interface FastifyInstance {
    keyDeletion: KeyDeletion;
  }
}

/** Deleting data keys, refused while a collection schema names them (src/documents/key-deletion.ts). */
export default fp(
  async (app) => {
    app.decorate('keyDeletion', createKeyDeletion({ registry: app.schemaRegistry, keyVault: app.keyVault }));
  },
  { name: 'key-deletion', dependencies: ['key-vault', 'documents'] },
);

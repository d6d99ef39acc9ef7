import type { FastifyInstance, FastifyRequest } from 'fastify';
import { allows, isOperator, uncoveredAltName, type Principal } from '../src/clients/scopes.js';
import { coversKey } from '../src/clients/key-authorizer.js';
import type { KeyDocument } from '../src/key-vault/key-document.js';
import type { ListedKey } from '../src/key-vault/key-store.js';
import {
  addAltNameBodySchema,
  altNameParamsSchema,
  createKeyBodySchema,
  deleteKeyQuerySchema,
  removeAltNameQuerySchema,
  keyAndAltNameParamsSchema,
  keyIdParamsSchema,
  keyListSchema,
  listKeysQuerySchema,
  rewrapBodySchema,
  rewrapResponseSchema,
  rotationReportQuerySchema,
  rotationReportSchema,
} from '../schemas/http/keys.js';
import { migrationBodySchema, migrationDryRunSchema } from '../schemas/http/jobs.js';
import { selectorOf, startKeyMigration, type KeySelection } from '../src/jobs/start-key-migration.js';
import { commonErrors, errorResponses, idempotencyHeaders } from '../schemas/http/common.js';
import { AppError } from '../src/errors.js';
import { parseMasterKey, type MasterKey } from '../src/kms/master-key.js';
import { keyIdToString, parseKeyId, toKeyView, toTrashedKeyView } from '../src/key-vault/key-document.js';

type MasterKeyInput = { provider: string; key?: string; region?: string };

/** What the API shows of a key in either state. */
function viewOf(key: ListedKey) {
  return key.state === 'deleted' ? toTrashedKeyView(key.doc) : toKeyView(key.doc);
}

/** A downgrade (KMS → local) is allowed only when asked for explicitly, and by the operator. */
function downgradeAllowed(principal: Principal, body: { allowDowngrade?: boolean }): boolean {
  return body.allowDowngrade === true && isOperator(principal);
}
const downgradeRule =
  'Moving keys now under a KMS (aws) to the local master key is a downgrade: refused with 403 FORBIDDEN unless the body has "allowDowngrade": true and the caller is the operator (ADMIN_TOKEN). A permission, not a validation matter, hence 403.';
const key = { $ref: 'Key#' };
const security = [{ bearerAuth: [] }];
const tags = ['keys'];
const namesCovered = "Each alt name must be covered on its own by the caller's keys:write grants (403 FORBIDDEN otherwise).";
const trashRule =
  "Needs keys:delete covering the key (its id, or one of its alt names); a key beyond the caller's grants answers 404 KEY_NOT_FOUND, deleted or not.";
const selectionCovered =
  "Each key id and alt name the filter names must be covered by the caller's keys:rewrap grants, and so must every key it matches (403 FORBIDDEN otherwise).";

export default async function keyRoutes(app: FastifyInstance) {
  const { keyVault } = app;
  // The report's default period is the rotation period the reminders use.
  const reportPeriodDays = app.config.keyRotation.periodDays > 0 ? app.config.keyRotation.periodDays : 365;

  /** Whether the caller's grants of the route's scope cover the key (by its id and the names it holds). */
  function covers(request: FastifyRequest, doc: KeyDocument): boolean {
    return coversKey(request.principal!, request.scope!, keyIdToString(doc._id.buffer), doc.keyAltNames ?? []);
  }

  /** Refuse (404) an active key the caller's grants do not cover. */
  async function visible(request: FastifyRequest, doc: KeyDocument) {
    await coveredKey(request, { state: 'active', doc });
  }

  /**
   * The key, active or deleted, if it exists and the caller's grants cover it. A key beyond the
   * caller's grants is, to it, a key that does not exist (no enumeration of names), in the trash too.
   */
  async function coveredKey(request: FastifyRequest, key: ListedKey | null): Promise<ListedKey> {
    if (key === null || !covers(request, key.doc)) throw new AppError('KEY_NOT_FOUND');
    request.auditDetails = { keyIds: [keyIdToString(key.doc._id.buffer)] };
    return key;
  }

  /**
   * Refuse unless the caller's grants of the route's scope cover each of `names` on its own. Using
   * a key needs any one of its names covered; claiming, removing or selecting names needs every
   * one: `["billing-x", "hr-2027"]` must not hand another team's name to whoever holds `billing-*`.
   */
  function assertNamesCovered(request: FastifyRequest, names: string[], field?: string) {
    const at = uncoveredAltName(request.principal!, request.scope!, names);
    if (at === -1) return;
    throw new AppError('FORBIDDEN', `Your ${request.scope} grants do not cover ${field === undefined ? 'that key alt name' : `${field}[${at}]`}.`);
  }

  /**
   * Every key id and alt name a rewrap or migration filter names must be the caller's, each on its
   * own (ids through the key authorizer, which knows each key's names): a selection naming other
   * keys is refused, not answered with what matched. The keys matched are checked again when read.
   */
  async function assertSelectionCovered(request: FastifyRequest, filter: KeySelection) {
    if (filter.keyIds !== undefined) {
      const ids = filter.keyIds.map((id) => keyIdToString(parseKeyId(id).buffer));
      const allowed = await request.authorizeKeys()(ids);
      const at = ids.findIndex((id) => !allowed.has(id));
      if (at !== -1) throw new AppError('FORBIDDEN', `Your ${request.scope} grants do not cover filter.keyIds[${at}].`);
    }
    assertNamesCovered(request, filter.keyAltNames ?? [], 'filter.keyAltNames');
  }

  app.post(
    '/keys',
    {
      config: { scope: 'keys:write', audit: 'keys.create', idempotent: true },
      schema: {
        headers: idempotencyHeaders,
        tags,
        security,
        summary: 'Create a data key wrapped by a master key',
        description: `${namesCovered} A client whose keys:write grants are limited to some keys must name the key.`,
        body: createKeyBodySchema,
        response: { 201: key, ...errorResponses(...commonErrors, 403, 429, 409, 422, 502) },
      },
    },
    async (request, reply) => {
      const body = request.body as { masterKey: MasterKeyInput; keyAltNames?: string[]; keyMaterial?: string };
      if (body.keyAltNames === undefined || body.keyAltNames.length === 0) {
        // A new key's id is random: only a grant without key limits can cover a key without names.
        if (!allows(request.principal!, 'keys:write', { keyAltNames: [] })) {
          throw new AppError('FORBIDDEN', 'Your keys:write grants are limited to some keys: a key without alt names would be outside them.');
        }
      }
      assertNamesCovered(request, body.keyAltNames ?? [], 'keyAltNames');
      const doc = await keyVault.createDataKey({
        masterKey: parseMasterKey(body.masterKey),
        keyAltNames: body.keyAltNames,
        keyMaterial: body.keyMaterial === undefined ? undefined : Buffer.from(body.keyMaterial, 'base64'),
      });
      const view = toKeyView(doc);
      request.auditDetails = { keyIds: [view.id] };
      return reply.code(201).header('location', `/keys/${view.id}`).send(view);
    },
  );

  app.get(
    '/keys',
    {
      config: { scope: 'keys:read', audit: 'keys.list' },
      schema: {
        tags,
        security,
        summary: 'List data keys (metadata only), a page at a time',
        description: 'Active keys by default; state=deleted lists the trash, state=all both, in one id order.',
        querystring: listKeysQuerySchema,
        response: { 200: keyListSchema, ...errorResponses(...commonErrors, 403, 429) },
      },
    },
    async (request) => {
      const query = request.query as { limit: number; after?: string; provider?: MasterKey['provider']; masterKey?: string; state: 'active' | 'deleted' | 'all' };
      const keys = await keyVault.listInState({
        state: query.state,
        limit: query.limit + 1,
        after: query.after === undefined ? undefined : parseKeyId(query.after),
        selector: { provider: query.provider, masterKeyArn: query.masterKey },
      });
      const page = keys.slice(0, query.limit);
      // Keys outside the caller's grants are left out of the page (the cursor still moves on).
      const items = page.filter((key) => covers(request, key.doc)).map(viewOf);
      return keys.length > query.limit ? { items, next: keyIdToString(page.at(-1)!.doc._id.buffer) } : { items };
    },
  );

  app.post(
    '/keys/migrations',
    {
      config: { scope: 'keys:rewrap', audit: 'keys.migration', idempotent: true },
      schema: {
        tags,
        security,
        summary: 'Guided master-key migration (CMK rotation, local → AWS): a dry run, or a job with progress and a verification pass',
        description:
          `With dryRun, lists the data keys it would migrate. Otherwise starts a job (202, Location: /jobs/{id}) that rewraps each key, then unwraps every migrated key under its new wrapping and checks it is unchanged before reporting success. Ciphertexts are never touched. If its instance stops, another takes the job over and resumes it (as the job's creator, with the grants the creator has then); run it again with the same filter to resume a failed migration. ${selectionCovered} ${downgradeRule} A dry run still lists the plan, and under "downgrade" the keys it would downgrade and whether that is allowed.`,
        headers: idempotencyHeaders,
        body: migrationBodySchema,
        response: { 200: migrationDryRunSchema, 202: { $ref: 'Job#' }, ...errorResponses(...commonErrors, 403, 409, 422, 429, 502) },
      },
    },
    async (request, reply) => {
      const body = request.body as { filter: KeySelection; masterKey: MasterKeyInput; dryRun: boolean; allowDowngrade?: boolean };
      const masterKey = parseMasterKey(body.masterKey);
      app.kms.checkUsable(masterKey);
      await assertSelectionCovered(request, body.filter);
      const outcome = await startKeyMigration({ keyVault, jobs: app.jobs }, {
        filter: body.filter,
        masterKey,
        dryRun: body.dryRun,
        allowDowngrade: downgradeAllowed(request.principal!, body),
        createdBy: request.principal!.clientId,
        authorize: request.authorizeKeys(),
        onPlanned: (keyIds) => (request.auditDetails = { keyIds }),
      });
      if ('dryRun' in outcome) return outcome.dryRun;
      const { job } = outcome;
      return reply.code(202).header('location', `/jobs/${job.id}`).send(job);
    },
  );

  app.get(
    '/keys/rotation-report',
    {
      config: { scope: 'keys:read', audit: 'keys.rotationReport' },
      schema: {
        tags,
        security,
        summary: 'Master keys by the number of data keys they wrap, and wrappings older than the rotation period',
        querystring: rotationReportQuerySchema,
        response: { 200: rotationReportSchema, ...errorResponses(...commonErrors, 403, 429) },
      },
    },
    async (request) => keyVault.rotationReport((request.query as { olderThanDays?: number }).olderThanDays ?? reportPeriodDays, request.authorizeKeys()),
  );

  app.get(
    '/keys/:id',
    {
      config: { scope: 'keys:read', audit: 'keys.get' },
      schema: {
        tags,
        security,
        summary: 'Get one data key by id',
        description: 'A deleted key (in the trash) answers with state "deleted", deletedAt, deletedBy and purgeAfter.',
        params: keyIdParamsSchema,
        response: { 200: key, ...errorResponses(...commonErrors, 403, 429, 404) },
      },
    },
    async (request) => viewOf(await coveredKey(request, await keyVault.findInAnyState(parseKeyId((request.params as { id: string }).id)))),
  );

  app.get(
    '/keys/by-alt-name/:name',
    {
      config: { scope: 'keys:read', audit: 'keys.get' },
      schema: {
        tags,
        security,
        summary: 'Get one data key by key alt name',
        description: 'A deleted key keeps its alt names until it is purged, and is found by them (state "deleted").',
        params: altNameParamsSchema,
        response: { 200: key, ...errorResponses(...commonErrors, 403, 429, 404) },
      },
    },
    async (request) => viewOf(await coveredKey(request, await keyVault.findInAnyStateByAltName((request.params as { name: string }).name))),
  );

  app.post(
    '/keys/:id/alt-names',
    {
      config: { scope: 'keys:write', audit: 'keys.addAltName' },
      schema: {
        tags,
        security,
        summary: 'Add a key alt name to a data key',
        description: `The key must be covered by the caller's grants, and the new name too. ${namesCovered}`,
        params: keyIdParamsSchema,
        body: addAltNameBodySchema,
        response: { 200: key, ...errorResponses(...commonErrors, 403, 429, 404, 409) },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string };
      const { keyAltName } = request.body as { keyAltName: string };
      await visible(request, await keyVault.requireById(parseKeyId(id)));
      assertNamesCovered(request, [keyAltName]);
      return toKeyView(await keyVault.addAltName(parseKeyId(id), keyAltName));
    },
  );

  app.delete(
    '/keys/:id/alt-names/:name',
    {
      config: { scope: 'keys:write', audit: 'keys.removeAltName' },
      schema: {
        tags,
        security,
        summary: 'Remove a key alt name from a data key',
        description: `The key must be covered by the caller's grants, and the name removed too. ${namesCovered} Refused with 409 KEY_IN_USE (naming the collections) while a collection schema names the key by this alt name, unless ?force=true: the collection would stop resolving its key.`,
        params: keyAndAltNameParamsSchema,
        querystring: removeAltNameQuerySchema,
        response: { 200: key, ...errorResponses(...commonErrors, 403, 429, 404, 409) },
      },
    },
    async (request) => {
      const { id, name } = request.params as { id: string; name: string };
      await visible(request, await keyVault.requireById(parseKeyId(id)));
      // Removing another team's name from a shared key would break what it resolves by that name.
      assertNamesCovered(request, [name]);
      const { force } = request.query as { force: boolean };
      return toKeyView(await app.keyDeletion.removeAltName(parseKeyId(id), name, { force }));
    },
  );

  app.delete(
    '/keys/:id',
    {
      config: { scope: 'keys:delete', audit: 'keys.delete' },
      schema: {
        tags,
        security,
        summary: 'Delete a data key: it moves to the trash, unusable at once, restorable until it is purged',
        description: `Refused with 409 KEY_IN_USE (naming the collections) while a collection schema names the key by id or by one of its alt names, unless ?force=true. A deleted key is unusable at once on every instance (within 1 s), as if it did not exist; its alt names stay reserved; POST /keys/{id}/restore brings it back until its purgeAfter (KEY_TRASH_RETENTION_MS later), when a sweep purges it for good, or POST /keys/{id}/purge does at once. Deleting a deleted key: 409 KEY_ALREADY_DELETED. ${trashRule}`,
        params: keyIdParamsSchema,
        querystring: deleteKeyQuerySchema,
        response: { 204: { type: 'null', description: 'Deleted (in the trash).' }, ...errorResponses(...commonErrors, 403, 429, 404, 409) },
      },
    },
    async (request, reply) => {
      const id = parseKeyId((request.params as { id: string }).id);
      const key = await coveredKey(request, await keyVault.findInAnyState(id));
      if (key.state === 'deleted') throw new AppError('KEY_ALREADY_DELETED');
      const { force } = request.query as { force: boolean };
      if (!(await app.keyDeletion.deleteKey(key.doc, { force, deletedBy: request.principal!.clientId }))) throw new AppError('KEY_NOT_FOUND');
      return reply.code(204).send();
    },
  );

  app.post(
    '/keys/:id/restore',
    {
      config: { scope: 'keys:delete', audit: 'keys.restore' },
      schema: {
        tags,
        security,
        summary: 'Restore a deleted data key from the trash: usable again, and every value encrypted under it decrypts again',
        description: `Answers the key (state "active"). An active key: 409 KEY_NOT_DELETED; a purged one: 404 KEY_NOT_FOUND; one of its alt names taken meanwhile by another key: 409 KEY_ALT_NAME_CONFLICT (nothing moves). ${trashRule}`,
        params: keyIdParamsSchema,
        response: { 200: key, ...errorResponses(...commonErrors, 403, 429, 404, 409) },
      },
    },
    async (request) => {
      const id = parseKeyId((request.params as { id: string }).id);
      const found = await coveredKey(request, await keyVault.findInAnyState(id));
      if (found.state === 'active') throw new AppError('KEY_NOT_DELETED');
      return toKeyView(await keyVault.restoreKey(id));
    },
  );

  app.post(
    '/keys/:id/purge',
    {
      config: { scope: 'keys:delete', audit: 'keys.purge' },
      schema: {
        tags,
        security,
        summary: 'Purge a deleted data key now (crypto-shredding): every value encrypted under it is unreadable for good',
        description: `Only a key in the trash: an active key answers 409 KEY_NOT_DELETED (delete it first). Its alt names are free again. Copies of the key vault in backups still hold the key until they expire. ${trashRule}`,
        params: keyIdParamsSchema,
        response: { 204: { type: 'null', description: 'Purged.' }, ...errorResponses(...commonErrors, 403, 429, 404, 409) },
      },
    },
    async (request, reply) => {
      const id = parseKeyId((request.params as { id: string }).id);
      const found = await coveredKey(request, await keyVault.findInAnyState(id));
      if (found.state === 'active') throw new AppError('KEY_NOT_DELETED', 'The data key is active: delete it first, then purge it.');
      await keyVault.purgeKey(id);
      return reply.code(204).send();
    },
  );

  app.post(
    '/keys/rewrap',
    {
      config: { scope: 'keys:rewrap', audit: 'keys.rewrap', idempotent: true },
      schema: {
        headers: idempotencyHeaders,
        tags,
        security,
        summary: 'Re-encrypt data keys under a new master key (CMK rotation, local → AWS migration)',
        description: `Data keys and every ciphertext stay the same; only their wrapping changes. A KMS failure writes nothing. ${selectionCovered} ${downgradeRule}`,
        body: rewrapBodySchema,
        response: { 200: rewrapResponseSchema, ...errorResponses(...commonErrors, 403, 409, 422, 429, 502) },
      },
    },
    async (request) => {
      const body = request.body as { filter: KeySelection; masterKey: MasterKeyInput; allowDowngrade?: boolean };
      await assertSelectionCovered(request, body.filter);
      const result = await keyVault.rewrap(selectorOf(body.filter), parseMasterKey(body.masterKey), request.authorizeKeys(), {
        allowDowngrade: downgradeAllowed(request.principal!, body),
      });
      request.auditDetails = { keyIds: result.keyIds };
      return result;
    },
  );
}

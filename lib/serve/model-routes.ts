// The models a client may name (OpenAI's GET /v1/models, /v1/models/:id: the base model and each adapter) and the
// adapters themselves (GET /v1/adapters; POST and DELETE, admin only, from folders under the adapter roots).
import type { FastifyInstance } from 'fastify';
import type { AdapterInfo } from '../engine/model.js';
import type { AdapterRoots } from './adapter-roots.js';
import { ApiError, badRequest } from './errors.js';
import type { ServedPersonalizer } from './feedback-routes.js';
import type { ServedGrounder } from './served-grounder.js';

const OWNER = 'pigg';

function modelObject(id: string, created: number, parent: string | null): Record<string, unknown> {
  return { id, object: 'model', created, owned_by: OWNER, ...(parent ? { parent, root: parent } : { root: id }) };
}

/** An adapter as clients see it: its folder relative to an adapter root, never the server's own path. */
function adapterObject(info: AdapterInfo, roots: AdapterRoots): Record<string, unknown> {
  return { id: info.name, object: 'adapter', ...info, path: roots.show(info.path) };
}

/** 404 (param 'model') for a name that is neither null (the base model) nor an adapter served. */
export function checkModel(grounder: ServedGrounder, name: string | null): void {
  if (name === null) return;
  const names = grounder.adapters().map((a) => a.name);
  if (!names.includes(name)) {
    throw new ApiError(404, 'model_not_found', `the model '${name}' does not exist: this server has the base model '${grounder.modelName}'`
      + (names.length ? ` and the adapters ${names.join(', ')}` : ' and no adapters'), 'model');
  }
}

export function registerModelRoutes(app: FastifyInstance, grounder: ServedGrounder, adapterRoots: AdapterRoots, personalizer: ServedPersonalizer | undefined): void {
  const started = Math.floor(Date.now() / 1000);
  /** When each adapter was first listed or loaded (OpenAI's `created`). */
  const adapterCreated = new Map<string, number>();

  const models = () => [
    modelObject(grounder.modelName, started, null),
    ...grounder.adapters().map((a) => {
      if (!adapterCreated.has(a.name)) adapterCreated.set(a.name, Math.floor(Date.now() / 1000));
      return modelObject(a.name, adapterCreated.get(a.name)!, grounder.modelName);
    }),
  ];

  app.get('/v1/models', async () => ({ object: 'list', data: models() }));

  app.get<{ Params: { id: string } }>('/v1/models/:id', async (request) => {
    const found = models().find((m) => m.id === request.params.id);
    if (!found) checkModel(grounder, request.params.id);
    return found;
  });

  app.get('/v1/adapters', async () => ({ object: 'list', data: grounder.adapters().map((a) => adapterObject(a, adapterRoots)) }));

  app.post('/v1/adapters', async (request, reply) => {
    const body = request.body as Record<string, unknown> | null;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest('invalid_body', 'the request body must be a JSON object {name, path}');
    const { name, path } = body;
    if (typeof name !== 'string' || name === '') throw badRequest('invalid_name', 'name must be a non-empty string', 'name');
    if (!/^[\w.:@-]{1,128}$/.test(name)) throw badRequest('invalid_name', `name '${name}' may hold only letters, digits and _ . : @ - (at most 128)`, 'name');
    if (name === grounder.modelName) throw badRequest('invalid_name', `'${name}' is the base model's name; choose another adapter name`, 'name');
    if (personalizer?.knows(name)) {
      throw new ApiError(409, 'name_taken', `'${name}' is a feedback user's id (its adapter is trained and promoted from feedback); choose another adapter name`, 'name');
    }
    if (typeof path !== 'string' || path === '') throw badRequest('invalid_path', 'path must be the adapter folder on the server (adapter_config.json + adapter_model.safetensors)', 'path');
    const folder = adapterRoots.resolve(path);
    let info: AdapterInfo;
    try {
      info = await grounder.addAdapter(name, folder);
    } catch (error) {
      throw badRequest('invalid_adapter', `cannot load the adapter '${name}' from ${adapterRoots.show(folder)}: ${adapterRoots.redact((error as Error).message)}`, 'path');
    }
    adapterCreated.set(name, Math.floor(Date.now() / 1000));
    return reply.code(201).send(adapterObject(info, adapterRoots));
  });

  app.delete<{ Params: { name: string } }>('/v1/adapters/:name', async (request) => {
    const { name } = request.params;
    if (!grounder.removeAdapter(name)) checkModel(grounder, name);
    adapterCreated.delete(name);
    return { id: name, object: 'adapter', deleted: true };
  });
}

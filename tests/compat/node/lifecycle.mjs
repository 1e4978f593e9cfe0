// session.archive() / unarchive(), the archived filter on jules.sessions(), and deletion.
// The SDK 0.2.0 has no session.delete(); deletion goes through its own HTTP layer
// (ApiClient.request, method DELETE), the way a user reaches an unwrapped endpoint.
// Env: BASE_URL, API_KEY.
import { attempt, connect, main } from './_client.mjs';

async function listIds(client, filter) {
  const ids = [];
  for await (const s of client.sessions({ pageSize: 100, filter })) ids.push(s.id);
  return ids;
}

await main(async () => {
  const client = connect();
  const session = await client.session({ prompt: 'Archive me later', requireApproval: false });
  const id = session.id;
  const steps = {};
  await session.archive();
  steps.archived = {
    info: (await client.session(id).info()).archived,
    defaultList: await listIds(client),
    archivedList: await listIds(client, 'archived = true'),
  };
  await session.unarchive();
  steps.unarchived = {
    info: (await client.session(id).info()).archived,
    defaultList: await listIds(client),
    archivedList: await listIds(client, 'archived = true'),
  };
  steps.deleted = await attempt(() =>
    client.apiClient.request(`sessions/${id}`, { method: 'DELETE' }),
  );
  steps.afterDelete = {
    info: await attempt(() => connect().session(id).info()),
    defaultList: await listIds(client),
    deleteAgain: await attempt(() =>
      client.apiClient.request(`sessions/${id}`, { method: 'DELETE' }),
    ),
  };
  return { id, steps };
});

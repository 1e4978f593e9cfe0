// jules.sources() (all pages, and with a name filter) and jules.sources.get().
// Env: BASE_URL, API_KEY, REPO ("owner/repo" of a registered source), MISSING_REPO.
import { connect, env, main } from './_client.mjs';

await main(async () => {
  const client = connect();
  const listed = [];
  for await (const source of client.sources()) listed.push(source);
  const filtered = [];
  const wanted = `sources/github/${env('REPO')}`;
  for await (const source of client.sources({ filter: `name=${wanted}` })) filtered.push(source);
  const got = await client.sources.get({ github: env('REPO') });
  const missing = await client.sources.get({ github: env('MISSING_REPO') });
  return {
    listed,
    filtered,
    got: got ?? null,
    missingIsUndefined: missing === undefined,
  };
});

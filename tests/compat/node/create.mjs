// jules.session(config): with plan approval (the SDK default), without, and repoless;
// then jules.session(id).info() from a second client that has no cache.
// Env: BASE_URL, API_KEY, REPO ("owner/repo"), BRANCH.
import { connect, env, main, sessionView } from './_client.mjs';

await main(async () => {
  const client = connect();
  const source = { github: env('REPO'), baseBranch: env('BRANCH') };
  const withApproval = await client.session({ prompt: 'Add a CHANGELOG', source });
  const withoutApproval = await client.session({
    prompt: 'Fix the typo in README',
    source,
    requireApproval: false,
  });
  const repoless = await client.session({
    prompt: 'Write a haiku about\nrefactoring',
    title: 'Haiku',
  });
  const fresh = connect();
  const view = async (session) => ({
    clientId: session.id,
    info: sessionView(await fresh.session(session.id).info()),
  });
  return {
    withApproval: await view(withApproval),
    withoutApproval: await view(withoutApproval),
    repoless: await view(repoless),
  };
});

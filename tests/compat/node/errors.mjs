// How the SDK's error classes come out of the server's answers (spec §8.4, §16.10).
// Env: BASE_URL, API_KEY, REPO ("owner/repo"), MISSING_REPO, MISSING_SESSION_ID.
import { attempt, connect, env, main } from './_client.mjs';

await main(async () => {
  const client = connect();
  const wrong = connect({ apiKey: 'not-a-valid-key' });
  const started = Date.now();
  const observations = {
    wrongKey: {
      sourcesList: await attempt(async () => {
        for await (const _ of wrong.sources()) break;
      }),
      sourcesGet: await attempt(() => wrong.sources.get({ github: env('REPO') })),
      sessionsList: await attempt(() => wrong.sessions({ pageSize: 5 })),
      create: await attempt(() => wrong.session({ prompt: 'Hello' })),
    },
    unknownRepoGet: await attempt(async () => {
      const source = await client.sources.get({ github: env('MISSING_REPO') });
      return { isUndefined: source === undefined };
    }),
    unknownRepoCreate: await attempt(() =>
      client.session({ prompt: 'Hello', source: { github: env('MISSING_REPO'), baseBranch: 'main' } }),
    ),
    // The same create sent straight through the SDK's HTTP layer reaches the server.
    unknownSourceRaw: await attempt(() =>
      client.apiClient.request('sessions', {
        method: 'POST',
        body: { prompt: 'Hello', sourceContext: { source: `sources/github/${env('MISSING_REPO')}` } },
      }),
    ),
    unknownBranch: await attempt(() =>
      client.session({ prompt: 'Hello', source: { github: env('REPO'), baseBranch: 'no-such-branch' } }),
    ),
    emptyPrompt: await attempt(() => client.session({ prompt: '' })),
    unknownSession: await attempt(() => client.session(env('MISSING_SESSION_ID')).info()),
    sendToUnknownSession: await attempt(() =>
      client.session(env('MISSING_SESSION_ID')).send('Anyone there?'),
    ),
  };
  const session = await client.session({ prompt: 'Nothing to approve', requireApproval: false });
  observations.approveWithoutPlan = await attempt(() => session.approve());
  observations.emptyMessage = await attempt(() => session.send(''));
  observations.elapsedMs = Date.now() - started;
  return observations;
});

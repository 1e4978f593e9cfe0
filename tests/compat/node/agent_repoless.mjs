// jules.run() without a source (a repoless session; the SDK's default autoPr: true), run
// by the real agent against the scripted fake model. Reads the files the session produced
// through outcome.generatedFiles() (all() and get(PATH)). Prints one JSON object.
// Env: BASE_URL, API_KEY, PROMPT, FILE_PATH.
import { connect, env, main } from './_client.mjs';

await main(async () => {
  const client = connect();
  const run = await client.run({ prompt: env('PROMPT') });
  const outcome = await run.result();
  const files = outcome.generatedFiles();
  const info = await connect().session(run.id).info();
  return {
    id: run.id,
    outcome: {
      state: outcome.state,
      sessionId: outcome.sessionId,
      pullRequest: outcome.pullRequest ?? null,
      all: files.all(),
      got: files.get(env('FILE_PATH')) ?? null,
      created: files.filter('created'),
      changeSetSource: outcome.changeSet()?.source ?? null,
    },
    info: {
      state: info.state,
      sourceContext: info.sourceContext ?? null,
      outputs: info.outputs,
    },
  };
});

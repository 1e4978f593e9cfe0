// jules.run() (automated mode, autoPr: false) against a server whose agent talks to the
// scripted fake model. run.result() polls to the end while run.stream() and
// session(id).stream() follow the activities; once both saw the terminal activity they are
// watched QUIET_MS longer (to catch a repeat). Prints one JSON object of observations.
// Env: BASE_URL, API_KEY, REPO ("owner/repo"), BRANCH, QUIET_MS, DEADLINE_MS.
import { changeSetView, followUntilEnd } from './_agent.mjs';
import { connect, env, main } from './_client.mjs';

await main(async () => {
  const started = Date.now();
  const client = connect();
  const run = await client.run({
    prompt: 'Make the app greet the world',
    source: { github: env('REPO'), baseBranch: env('BRANCH') },
    autoPr: false,
  });
  const deadline = started + Number(env('DEADLINE_MS'));
  const quietMs = Number(env('QUIET_MS'));
  const streams = {
    runStream: followUntilEnd(run.stream(), { deadline, quietMs }),
    sessionStream: followUntilEnd(connect().session(run.id).stream(), { deadline, quietMs }),
  };

  const outcome = await run.result();
  const resultMs = Date.now() - started;
  const changeSet = outcome.changeSet();
  const followed = {};
  for (const [key, promise] of Object.entries(streams)) followed[key] = await promise;

  const info = await connect().session(run.id).info();
  return {
    id: run.id,
    resultMs,
    runStream: followed.runStream,
    sessionStream: followed.sessionStream,
    outcome: {
      state: outcome.state,
      sessionId: outcome.sessionId,
      title: outcome.title,
      pullRequest: outcome.pullRequest ?? null,
      changeSet: changeSetView(changeSet),
      generatedFiles: outcome.generatedFiles().all(),
    },
    info: { state: info.state, outputs: info.outputs },
  };
});
// The streams poll forever; stop once the observations are out.
process.exit();

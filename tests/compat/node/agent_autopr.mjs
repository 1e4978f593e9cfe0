// jules.run() with autoPr: true on a GitHub source, against a server whose agent talks to
// the scripted fake model and delivers to the fake GitHub. run.result() polls to the end
// while run.stream() follows the activities (until the terminal one plus QUIET_MS). Prints
// one JSON object of observations: the outcome's pull request and change set, the stream,
// and the session as session(id).info() reads it afterwards.
// Env: BASE_URL, API_KEY, REPO ("owner/repo"), BRANCH, QUIET_MS, DEADLINE_MS.
import { changeSetView, followUntilEnd } from './_agent.mjs';
import { connect, env, main } from './_client.mjs';

await main(async () => {
  const started = Date.now();
  const client = connect();
  const run = await client.run({
    prompt: 'Make the app greet the world',
    source: { github: env('REPO'), baseBranch: env('BRANCH') },
    autoPr: true,
  });
  const stream = followUntilEnd(run.stream(), {
    deadline: started + Number(env('DEADLINE_MS')),
    quietMs: Number(env('QUIET_MS')),
  });

  const outcome = await run.result();
  const followed = await stream;
  const info = await connect().session(run.id).info();
  return {
    id: run.id,
    stream: followed,
    outcome: {
      state: outcome.state,
      sessionId: outcome.sessionId,
      pullRequest: outcome.pullRequest ?? null,
      changeSet: changeSetView(outcome.changeSet()),
      generatedFiles: outcome.generatedFiles().all(),
    },
    info: {
      state: info.state,
      sourceContext: info.sourceContext ?? null,
      outputs: info.outputs,
    },
  };
});
// The stream polls forever; stop once the observations are out.
process.exit();

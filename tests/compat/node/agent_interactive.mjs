// An interactive session (jules.session with requireApproval: true) run by the real agent
// against the scripted fake model: waitFor('awaitingPlanApproval') -> read the plan ->
// approve() -> the state right after -> result() -> changeSet. session.stream() follows it all
// (until the terminal activity plus QUIET_MS). Prints one JSON object of observations.
// Env: BASE_URL, API_KEY, REPO ("owner/repo"), BRANCH, QUIET_MS, DEADLINE_MS.
import { agentActivityView, changeSetView, followUntilEnd } from './_agent.mjs';
import { connect, env, main } from './_client.mjs';

await main(async () => {
  const started = Date.now();
  const deadline = started + Number(env('DEADLINE_MS'));
  const client = connect();
  const session = await client.session({
    prompt: 'Make the app greet the world',
    source: { github: env('REPO'), baseBranch: env('BRANCH') },
    requireApproval: true,
    autoPr: false,
  });
  const streamed = followUntilEnd(session.stream(), { deadline, quietMs: Number(env('QUIET_MS')) });

  await session.waitFor('awaitingPlanApproval', { timeoutMs: deadline - Date.now() });
  const waiting = (await session.info()).state;
  const historyBefore = [];
  for await (const activity of session.history()) historyBefore.push(agentActivityView(activity));

  await session.approve();
  const afterApprove = (await session.info()).state;

  const outcome = await session.result({ timeoutMs: deadline - Date.now() });
  const resultMs = Date.now() - started;
  const info = await session.info();
  const historyAfter = [];
  for await (const activity of session.history()) historyAfter.push(agentActivityView(activity));
  return {
    id: session.id,
    resultMs,
    waiting,
    historyBefore,
    afterApprove,
    outcome: {
      state: outcome.state,
      sessionId: outcome.sessionId,
      title: outcome.title,
      pullRequest: outcome.pullRequest ?? null,
      changeSet: changeSetView(outcome.changeSet()),
      generatedFiles: outcome.generatedFiles().all(),
    },
    info: { state: info.state, outputs: info.outputs },
    historyAfter,
    stream: await streamed,
  };
});
// session.stream() polls forever; stop once the observations are out.
process.exit();

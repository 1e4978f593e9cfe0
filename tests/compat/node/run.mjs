// jules.run() (automated mode): prints a first line {"ready": true, "id"} once the session
// exists, then follows it with run.stream() and session(id).stream() at the same time while
// the test drives the session, until EXPECT activities arrived on both plus QUIET_MS more
// (to catch duplicates); then run.result() and the session's info() and snapshot().
// Env: BASE_URL, API_KEY, REPO ("owner/repo"), BRANCH, EXPECT, QUIET_MS, DEADLINE_MS.
import { activityView, connect, env, main } from './_client.mjs';

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function follow(stream, into) {
  for await (const activity of stream) into.push(activityView(activity));
}

await main(async () => {
  const client = connect();
  const expect = Number(env('EXPECT'));
  const run = await client.run({
    prompt: 'Add a CHANGELOG',
    source: { github: env('REPO'), baseBranch: env('BRANCH') },
  });
  process.stdout.write(`${JSON.stringify({ ready: true, id: run.id })}\n`);

  const runStream = [];
  const sessionStream = [];
  const failures = [];
  for (const [stream, into] of [
    [run.stream(), runStream],
    [client.session(run.id).stream(), sessionStream],
  ]) {
    follow(stream, into).catch((error) => failures.push(String(error?.stack ?? error)));
  }
  const deadline = Date.now() + Number(env('DEADLINE_MS'));
  while (Date.now() < deadline && failures.length === 0) {
    if (runStream.length >= expect && sessionStream.length >= expect) break;
    await sleep(20);
  }
  await sleep(Number(env('QUIET_MS')));

  const outcome = await run.result();
  const session = connect().session(run.id);
  const info = await session.info();
  const snapshot = await session.snapshot();
  return {
    id: run.id,
    failures,
    runStream: [...runStream],
    sessionStream: [...sessionStream],
    outcome: {
      state: outcome.state,
      sessionId: outcome.sessionId,
      title: outcome.title,
      pullRequest: outcome.pullRequest ?? null,
      changeSet: outcome.changeSet()?.parsed() ?? null,
      generatedFiles: outcome.generatedFiles().all(),
    },
    info: { state: info.state, outputs: info.outputs },
    snapshot: {
      activityTypes: snapshot.activities.map((a) => a.type),
      changeSetArtifacts: snapshot.activities
        .flatMap((a) => a.artifacts)
        .filter((a) => a.type === 'changeSet')
        .map((a) => a.parsed().summary),
    },
  };
});
// The streams poll forever; stop them once the observations are out.
process.exit();

// Reading sessions our extension verbs changed: a PAUSED session (paused, then a message
// sent while paused) and a cancelled one (FAILED by the user), with session.info(),
// session.history() and jules.sessions(). The SDK knows PAUSED from Jules itself; its
// info() throws AutomatedSessionFailedError for every FAILED session, so a cancelled one
// is read through attempt().
// Env: BASE_URL, API_KEY, PAUSED_ID, CANCELLED_ID.
import { activityView, attempt, collect, connect, env, main } from './_client.mjs';

async function history(session) {
  return (await collect(session.history())).map((activity) => ({
    ...activityView(activity),
    title: activity.title ?? null,
    reason: activity.reason ?? null,
  }));
}

await main(async () => {
  const client = connect();
  const listed = {};
  for await (const s of client.sessions({ pageSize: 10 })) listed[s.id] = s.state;
  const paused = client.session(env('PAUSED_ID'));
  const cancelled = connect().session(env('CANCELLED_ID'));
  return {
    paused: { state: (await paused.info()).state, history: await history(paused) },
    cancelled: { info: await attempt(() => cancelled.info()), history: await history(cancelled) },
    listed,
  };
});

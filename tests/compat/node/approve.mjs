// session.waitFor('awaitingPlanApproval'), session.approve(), then info() and history();
// a second approve() when no plan is pending.
// Env: BASE_URL, API_KEY, SESSION_ID (a session with a plan awaiting approval).
import { activityView, attempt, collect, connect, env, main } from './_client.mjs';

await main(async () => {
  const client = connect();
  const session = client.session(env('SESSION_ID'));
  await session.waitFor('awaitingPlanApproval', { timeoutMs: 3000 });
  const before = (await session.info()).state;
  await session.approve();
  const after = (await session.info()).state;
  const history = (await collect(session.history())).map(activityView);
  const approveAgain = await attempt(() => session.approve());
  return { before, after, history, approveAgain };
});

// session.send(), then session.history() twice (the second call sends the SDK's
// create_time>"..." filter because activities are cached), activities.list() and
// activities.get() from a client without a cache.
// Env: BASE_URL, API_KEY.
import { activityView, collect, connect, main } from './_client.mjs';

await main(async () => {
  const client = connect();
  const session = await client.session({ prompt: 'Add tests', requireApproval: false });
  await session.send('Please also cover the error paths.');
  const firstHistory = (await collect(session.history())).map(activityView);
  await session.send('And update the README.');
  const secondHistory = (await collect(session.history())).map(activityView);
  const listed = await session.activities.list({ pageSize: 1 });
  const other = connect().session(session.id);
  const fetched = activityView(await other.activities.get(secondHistory[0].id));
  const info = await other.info();
  return {
    id: session.id,
    state: info.state,
    firstHistory,
    secondHistory,
    firstPage: {
      ids: listed.activities.map((a) => a.id),
      nextPageToken: listed.nextPageToken ?? null,
    },
    fetched,
  };
});

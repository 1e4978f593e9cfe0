// jules.sessions({pageSize}): page by page with pageToken (await = one page), and the
// cursor's own iteration over all pages (for await).
// Env: BASE_URL, API_KEY, PAGE_SIZE.
import { connect, env, main } from './_client.mjs';

await main(async () => {
  const client = connect();
  const pageSize = Number(env('PAGE_SIZE'));
  const pages = [];
  let pageToken;
  do {
    const page = await client.sessions({ pageSize, pageToken });
    pages.push({
      ids: page.sessions.map((s) => s.id),
      states: page.sessions.map((s) => s.state),
      nextPageToken: page.nextPageToken ?? null,
    });
    pageToken = page.nextPageToken;
  } while (pageToken && pages.length < 50);
  const iterated = [];
  for await (const session of client.sessions({ pageSize })) iterated.push(session.id);
  const limited = [];
  for await (const session of client.sessions({ pageSize, limit: 4 })) limited.push(session.id);
  return { pages, iterated, limited };
});

// Helpers for the scripts that follow a session run by the real agent (agent_*.mjs).

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const TERMINAL_ACTIVITIES = new Set(['sessionCompleted', 'sessionFailed']);

// What a user reads off an activity, artifacts included (the patch text, the bash output).
export function agentActivityView(activity) {
  return {
    id: activity.id,
    type: activity.type,
    originator: activity.originator,
    createTime: activity.createTime,
    title: activity.title ?? null,
    description: activity.description ?? null,
    message: activity.message ?? null,
    reason: activity.reason ?? null,
    plan: activity.plan ?? null,
    planId: activity.planId ?? null,
    artifacts: activity.artifacts.map((artifact) =>
      artifact.type === 'changeSet'
        ? { type: artifact.type, ...changeSetView(artifact) }
        : { type: artifact.type, text: String(artifact) },
    ),
  };
}

export function changeSetView(changeSet) {
  if (!changeSet) return null;
  return {
    source: changeSet.source ?? null,
    gitPatch: changeSet.gitPatch ?? null,
    summary: changeSet.parsed().summary,
    files: changeSet.parsed().files,
  };
}

// Follows an endless activity stream until a terminal activity arrived, then QUIET_MS more
// (a repeat would show up then), or until the deadline. Resolves to
// {activities, error, timedOut}; never rejects.
export function followUntilEnd(stream, { deadline, quietMs }) {
  const activities = [];
  let error = null;
  let endedAt = null;
  const iterator = stream[Symbol.asyncIterator]();
  (async () => {
    try {
      for (;;) {
        const { value, done } = await iterator.next();
        if (done) break;
        activities.push(agentActivityView(value));
        if (endedAt === null && TERMINAL_ACTIVITIES.has(value.type)) endedAt = Date.now();
      }
    } catch (caught) {
      error = String(caught?.stack ?? caught);
    }
  })();
  return (async () => {
    while (error === null && Date.now() < deadline) {
      if (endedAt !== null && Date.now() >= endedAt + quietMs) break;
      await sleep(20);
    }
    return { activities: [...activities], error, timedOut: endedAt === null };
  })();
}

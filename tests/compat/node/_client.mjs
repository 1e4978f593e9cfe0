// Shared set-up for the compat scripts: a TS SDK client aimed at a live openjules server.
//
// Every script reads BASE_URL and API_KEY from the environment, does its steps with the
// real @google/jules-sdk, and prints exactly one JSON object of observations on stdout.
// The pytest side asserts on that object.
import {
  JulesApiError,
  JulesAuthenticationError,
  MemorySessionStorage,
  MemoryStorage,
  jules,
} from '@google/jules-sdk';

export function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is not set`);
  return value;
}

// In-memory caches (no .jules/cache on disk) and short timeouts: a 5xx or 429 from the
// server must fail the test within a second instead of retrying for five minutes.
export function connect({ apiKey = env('API_KEY') } = {}) {
  return jules.with({
    apiKey,
    baseUrl: env('BASE_URL'),
    storageFactory: {
      activity: () => new MemoryStorage(),
      session: () => new MemorySessionStorage(),
    },
    config: {
      pollingIntervalMs: 50,
      requestTimeoutMs: 5000,
      rateLimitRetry: { maxRetryTimeMs: 300, baseDelayMs: 50, maxDelayMs: 100 },
    },
  });
}

export function describeError(error) {
  return {
    name: error?.name ?? null,
    message: String(error?.message ?? error),
    status: error?.status ?? null,
    isJulesApiError: error instanceof JulesApiError,
    isJulesAuthenticationError: error instanceof JulesAuthenticationError,
  };
}

// Runs fn; returns {ok: true, value} or {ok: false, error: describeError(...)}.
export async function attempt(fn) {
  try {
    return { ok: true, value: (await fn()) ?? null };
  } catch (error) {
    return { ok: false, error: describeError(error) };
  }
}

export async function collect(iterable) {
  const items = [];
  for await (const item of iterable) items.push(item);
  return items;
}

// The session fields a user reads, without the SDK's computed helpers (functions).
export function sessionView(info) {
  return {
    id: info.id,
    name: info.name,
    title: info.title,
    prompt: info.prompt,
    state: info.state,
    url: info.url,
    createTime: info.createTime,
    updateTime: info.updateTime,
    archived: info.archived,
    sourceContext: info.sourceContext ?? null,
    outputs: info.outputs,
  };
}

export function activityView(activity) {
  return {
    id: activity.id,
    name: activity.name,
    type: activity.type,
    originator: activity.originator,
    createTime: activity.createTime,
    message: activity.message ?? null,
    planId: activity.planId ?? null,
    plan: activity.plan ?? null,
    artifactCount: activity.artifacts.length,
  };
}

export async function main(fn) {
  try {
    const observations = await fn();
    process.stdout.write(`${JSON.stringify(observations)}\n`);
  } catch (error) {
    process.stderr.write(`${error?.stack ?? error}\n`);
    process.exitCode = 1;
  }
}

// Shared plumbing for the scripts in this folder: read options, build the SDK gateway exactly as a
// user would, and print one JSON document to stdout.
//
// Options come from argv (`--name value`) with an environment fallback:
//   --host           HERALD_HOST           "127.0.0.1:PORT" (no scheme; the SDK adds `protocol`)
//   --client-id      HERALD_CLIENT_ID
//   --client-secret  HERALD_CLIENT_SECRET

import { gateway, MemoryStorageFactory } from "@moltin/sdk";

export function options(argv = process.argv.slice(2)) {
  const opts = {};
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (!arg.startsWith("--")) throw new Error(`unexpected argument: ${arg}`);
    const eq = arg.indexOf("=");
    if (eq > 0) {
      opts[arg.slice(2, eq)] = arg.slice(eq + 1);
    } else if (i + 1 < argv.length && !argv[i + 1].startsWith("--")) {
      opts[arg.slice(2)] = argv[i + 1];
      i += 1;
    } else {
      opts[arg.slice(2)] = true;
    }
  }
  const env = process.env;
  opts.host ??= env.HERALD_HOST;
  opts["client-id"] ??= env.HERALD_CLIENT_ID;
  opts["client-secret"] ??= env.HERALD_CLIENT_SECRET;
  if (!opts.host) throw new Error("--host (or HERALD_HOST) is required, e.g. 127.0.0.1:8080");
  if (!opts["client-id"]) throw new Error("--client-id (or HERALD_CLIENT_ID) is required");
  return opts;
}

// The SDK reports its token cache decisions with console.info ("Token status: ..."). Keep stdout for the
// result document only, and remember the messages so a test can see whether the SDK re-authenticated.
export const sdkMessages = [];
for (const level of ["log", "info", "warn", "debug"]) {
  console[level] = (...args) => {
    const text = args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" ");
    sdkMessages.push(text);
    process.stderr.write(`[sdk ${level}] ${text}\n`);
  };
}

export function client(opts, { withSecret = true } = {}) {
  const config = {
    client_id: opts["client-id"],
    host: opts.host,
    protocol: "http",
    storage: new MemoryStorageFactory(),
  };
  if (withSecret) config.client_secret = opts["client-secret"];
  return gateway(config);
}

// A rejection of the SDK is either the parsed JSON error body of a non-2xx answer, or an Error
// (network failure, bug). Make both printable.
export function describeRejection(err) {
  if (err instanceof Error) return { error: { name: err.name, message: err.message, stack: err.stack } };
  return { body: err };
}

export function redactToken(tokenResponse) {
  if (!tokenResponse || typeof tokenResponse !== "object") return tokenResponse;
  const copy = { ...tokenResponse };
  if (typeof copy.access_token === "string") copy.access_token = `<${copy.access_token.length} chars>`;
  return copy;
}

// Print the result and exit: 0 when every step went as expected, 1 otherwise.
export function finish(result, failure = null) {
  const doc = { ...result, sdk_messages: sdkMessages, ok: failure === null };
  if (failure !== null) doc.failure = failure;
  process.stdout.write(`${JSON.stringify(doc)}\n`);
  process.exitCode = failure === null ? 0 : 1;
}

// Run `fn(result)`; a thrown/rejected step ends the script with exit code 1 and a document that says
// which step failed and why.
export async function run(fn) {
  const result = { steps: [] };
  try {
    await fn(result);
    finish(result);
  } catch (err) {
    const step = result.steps.length ? result.steps[result.steps.length - 1] : null;
    finish(result, { step, ...describeRejection(err) });
  }
}

// Record the step name, then await the SDK call: an unexpected rejection propagates to run().
export async function step(result, name, promiseFn) {
  result.steps.push(name);
  return promiseFn();
}

// Await an SDK call that MUST be rejected; resolves with the rejection, throws if it resolved.
export async function expectRejection(result, name, promiseFn) {
  result.steps.push(name);
  let value;
  try {
    value = await promiseFn();
  } catch (err) {
    return describeRejection(err);
  }
  const e = new Error(`${name}: expected a rejection, but the call resolved with ${JSON.stringify(value)}`);
  e.name = "UnexpectedResolution";
  throw e;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

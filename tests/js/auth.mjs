// Authentication edges through the official SDK.
//
//   node auth.mjs --host 127.0.0.1:PORT --client-id ID --client-secret SECRET
//
// 1. A wrong client_secret: Authenticate() must be rejected (401 errors body).
// 2. A stale cached token: Herald answers 401 and the SDK re-authenticates and retries by itself.
// 3. No client_secret (the SDK then asks for an implicit token): Authenticate() resolves, and
//    Integrations.All() must be rejected (403 errors body).
// Prints one JSON document; exits 1 on any unexpected rejection or resolution.

import { client, expectRejection, options, redactToken, run, step } from "./common.mjs";

const opts = options();

await run(async (result) => {
  const wrong = client({ ...opts, "client-secret": `${opts["client-secret"] ?? ""}-wrong` });
  result.wrong_secret = await expectRejection(result, "authenticate-wrong-secret", () => wrong.Authenticate());

  // 2. A stale cached token (e.g. signed with another HERALD_SECRET_KEY): Herald answers 401, the SDK
  //    re-authenticates by itself and retries; the call resolves.
  const stale = client(opts);
  stale.storage.set(
    "moltinCredentials",
    JSON.stringify({ client_id: opts["client-id"], access_token: "not-a-valid-token", expires: Math.floor(Date.now() / 1000) + 3600 }),
  );
  result.stale_token_all = await step(result, "stale-token-all", () => stale.Integrations.All());
  result.stale_token_replaced = stale.credentials()?.access_token !== "not-a-valid-token";

  const implicit = client(opts, { withSecret: false });
  result.implicit_authenticate = redactToken(await step(result, "authenticate-implicit", () => implicit.Authenticate()));
  result.implicit_all = await expectRejection(result, "implicit-integrations-all", () => implicit.Integrations.All());
});

// Authentication edges through the official SDK.
//
//   node auth.mjs --host 127.0.0.1:PORT --client-id ID --client-secret SECRET
//
// 1. A wrong client_secret: Authenticate() must be rejected (401 errors body).
// 2. No client_secret (the SDK then asks for an implicit token): Authenticate() resolves, and
//    Integrations.All() must be rejected (403 errors body).
// Prints one JSON document; exits 1 on any unexpected rejection or resolution.

import { client, expectRejection, options, redactToken, run, step } from "./common.mjs";

const opts = options();

await run(async (result) => {
  const wrong = client({ ...opts, "client-secret": `${opts["client-secret"] ?? ""}-wrong` });
  result.wrong_secret = await expectRejection(result, "authenticate-wrong-secret", () => wrong.Authenticate());

  const implicit = client(opts, { withSecret: false });
  result.implicit_authenticate = redactToken(await step(result, "authenticate-implicit", () => implicit.Authenticate()));
  result.implicit_all = await expectRejection(result, "implicit-integrations-all", () => implicit.Integrations.All());
});

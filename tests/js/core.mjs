// Script A ("core"): the integration lifecycle through the official SDK.
//
//   node core.mjs --host 127.0.0.1:PORT --client-id ID --client-secret SECRET \
//       --url http://receiver/hook --secret-key KEY [--name NAME] [--new-name NAME] [--probe-delivery]
//
// Authenticate, Create, All, All with Filter+Limit, Get, Update (sending back the masked configuration it read, as a user
// editing the object would), optionally publish an order.paid event and wait for its delivery log
// (--probe-delivery: shows which secret_key Herald kept), Delete, then Get must be rejected.
// Prints one JSON document; exits 1 on any unexpected rejection.

import { client, expectRejection, options, redactToken, run, sleep, step } from "./common.mjs";

const opts = options();
if (!opts.url) throw new Error("--url is required");
if (!opts["secret-key"]) throw new Error("--secret-key is required");
const name = opts.name ?? "JS SDK integration";
const newName = opts["new-name"] ?? `${name} (renamed)`;

const Moltin = client(opts);

await run(async (result) => {
  result.authenticate = redactToken(await step(result, "authenticate", () => Moltin.Authenticate()));

  result.created = await step(result, "create", () =>
    Moltin.Integrations.Create({
      name,
      observes: ["order.paid"],
      integration_type: "webhook",
      configuration: { url: opts.url, secret_key: opts["secret-key"] },
      enabled: true,
    }),
  );
  const id = result.created.data.id;

  result.all = await step(result, "all", () => Moltin.Integrations.All());
  // The SDK's query builders: filter=eq(name,<name with spaces>)&page[limit]=5, unencoded as the SDK sends it.
  result.all_filtered = await step(result, "all-filtered", () =>
    Moltin.Integrations.Filter({ eq: { name, enabled: true } }).Limit(5).All(),
  );
  result.get = await step(result, "get", () => Moltin.Integrations.Get(id));

  result.updated = await step(result, "update", () =>
    Moltin.Integrations.Update(id, {
      name: newName,
      description: "updated by the JS SDK",
      // What Get answered: the secret_key is masked. Herald must keep the stored secret.
      configuration: result.get.data.configuration,
    }),
  );

  if (opts["probe-delivery"]) {
    // The SDK has no Events endpoint (Herald's /v2/events is an extension); its request factory
    // sends any authenticated /v2 call and wraps the body in {"data": ...}.
    result.published = await step(result, "publish", () =>
      Moltin.request.send("events", "POST", {
        type: "event",
        triggered_by: "order.paid",
        payload: { id: "order-from-js-sdk", status: "paid" },
      }),
    );
    const deadline = Date.now() + 20000;
    for (;;) {
      result.probe_logs = await step(result, "probe-logs", () => Moltin.Integrations.GetLogs(id));
      if ((result.probe_logs.data ?? []).length > 0) break;
      if (Date.now() > deadline) throw new Error("no delivery log appeared within 20 s");
      await sleep(100);
    }
  }

  result.deleted = await step(result, "delete", () => Moltin.Integrations.Delete(id));
  result.get_after_delete = await expectRejection(result, "get-after-delete", () => Moltin.Integrations.Get(id));
});

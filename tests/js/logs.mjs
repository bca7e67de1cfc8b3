// Script B ("logs"): read the jobs and delivery logs of an integration through the official SDK.
//
//   node logs.mjs --host 127.0.0.1:PORT --client-id ID --client-secret SECRET \
//       --integration-id ID [--job-id ID]
//
// GetAllLogs, GetLogs(id), GetJobs(id), GetAllLogsForJob(id, jobId); jobId defaults to the first job
// GetJobs answered. Prints one JSON document; exits 1 on any unexpected rejection.

import { client, options, redactToken, run, step } from "./common.mjs";

const opts = options();
const id = opts["integration-id"] ?? process.env.HERALD_INTEGRATION_ID;
if (!id) throw new Error("--integration-id (or HERALD_INTEGRATION_ID) is required");

const Moltin = client(opts);

await run(async (result) => {
  result.authenticate = redactToken(await step(result, "authenticate", () => Moltin.Authenticate()));
  result.all_logs = await step(result, "get-all-logs", () => Moltin.Integrations.GetAllLogs());
  result.logs = await step(result, "get-logs", () => Moltin.Integrations.GetLogs(id));
  result.jobs = await step(result, "get-jobs", () => Moltin.Integrations.GetJobs(id));
  const jobId = opts["job-id"] ?? result.jobs.data?.[0]?.id;
  if (!jobId) throw new Error("GetJobs answered no job and no --job-id was given");
  result.job_id = jobId;
  result.job_logs = await step(result, "get-all-logs-for-job", () => Moltin.Integrations.GetAllLogsForJob(id, jobId));
});

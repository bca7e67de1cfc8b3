// Herald dashboard: new logs arrive on the first logs page, and a job's page follows its attempts, without a
// reload. Plain fetch polling with a cursor; the page keeps at most MAX_ROWS rows, so its memory stays bounded.
"use strict";
(function () {
  const EVERY = 2000;
  const MAX_ROWS = 200;

  function poll(step) {
    let timer = null;
    let stopped = false;
    async function tick() {
      if (stopped) return;
      if (!document.hidden) {
        try {
          const go = await step();
          if (go === false) { stopped = true; return; }
        } catch (err) {
          // the server may be restarting: try again at the next tick
        }
      }
      timer = setTimeout(tick, EVERY);
    }
    timer = setTimeout(tick, EVERY);
    return () => { stopped = true; clearTimeout(timer); };
  }

  async function fetchFragment(url) {
    const answer = await fetch(url, { headers: { "X-Herald-Fragment": "1" }, credentials: "same-origin" });
    if (answer.status === 401) { window.location.reload(); return null; }
    if (!answer.ok) return null;
    return answer;
  }

  function followLogs(body) {
    let url = new URL(body.dataset.live, window.location.href);
    const state = document.getElementById("live-state");
    poll(async () => {
      const answer = await fetchFragment(url);
      if (answer === null) return true;
      const html = (await answer.text()).trim();
      const after = answer.headers.get("X-Herald-After");
      if (after) { url.searchParams.set("after", after); }
      if (html) {
        const known = body.querySelector("tr");
        body.insertAdjacentHTML("afterbegin", html);
        for (let row = body.firstElementChild; row && row !== known; row = row.nextElementSibling) {
          row.classList.add("new");
        }
        while (body.rows.length > MAX_ROWS) { body.deleteRow(-1); }
        const empty = document.getElementById("no-logs");
        if (empty) { empty.remove(); }
        if (state) { state.textContent = "Updated " + new Date().toLocaleTimeString(); }
      }
      return true;
    });
  }

  function followJob(box) {
    const url = new URL(box.dataset.live, window.location.href);
    poll(async () => {
      const answer = await fetchFragment(url);
      if (answer === null) return true;
      const version = answer.headers.get("X-Herald-Version");
      if (version && version !== box.dataset.version) {
        box.innerHTML = await answer.text();
        box.dataset.version = version;
      }
      return true;
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const rows = document.querySelector("#log-rows[data-live]");
    if (rows) { followLogs(rows); }
    const job = document.querySelector("#job-live[data-live]");
    if (job) { followJob(job); }
  });
})();

// Re-explain a latent with the LLM, as a durable job (backend/routes/explain.py, docs/jobs.md):
// POST to the section's data-explain-url queues a job (202 with it; 409 with the one already
// queued or running for this latent), then the page follows the job's server-sent events
// (GET job.events_url, read from the job's row): queued, running with its stage, k of n and the
// elapsed time, then done (the new explanation with its confidence, null and verdict; the page's
// concept cards and history are swapped for the server's fresh ones, no reload), failed with the
// reason, or cancelled. On load the latent's newest job (data-job-url) is shown again, so a
// reload or a server restart loses nothing: the EventSource connects again by itself. A running
// job shows a Cancel button (its owner or an admin; the server says no to anyone else).
"use strict";

function explainText(el, tag, text, cls) {
  const node = document.createElement(tag);
  node.textContent = text;
  if (cls) node.className = cls;
  el.appendChild(node);
  return node;
}

// The page's concept cards and explanation history, rendered again by the server, in place.
async function refreshCards() {
  const url = new URL(window.location.href);
  url.searchParams.set("_fragment", "1");
  let response;
  try {
    response = await fetch(url, { headers: { Accept: "text/html" } });
  } catch (_err) {
    return false; // the server is away: the page says to reload
  }
  if (!response.ok) return false;
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const selector of ["section.concepts", "section.history"]) {
    const fresh = doc.querySelector(selector);
    const old = document.querySelector(selector);
    if (fresh && old) old.replaceWith(document.importNode(fresh, true));
  }
  return true;
}

async function errorBody(response) {
  try {
    return await response.json();
  } catch (_err) {
    return { detail: response.statusText }; // not JSON: the status text says what there is
  }
}

function showResult(out, body) {
  explainText(out, "p", body.text || "(no parseable explanation)", "concept");
  const score = body.verdict_text || `not scored (${body.status.replaceAll("_", " ")})`;
  const when = new Date(body.created_at).toLocaleString();
  const took = body.elapsed_s == null ? "" : ` · ${body.elapsed_s.toFixed(1)} s`;
  explainText(out, "p", `${score} · model ${body.model}${took} · ${when}`,
    "small muted explain-verdict");
  if (body.null_missing) explainText(out, "p", `No null: ${body.null_missing}.`, "small muted");
}

// One watcher per section: the job it follows, its clock and its stream.
const watching = new WeakMap();

function stopWatching(section) {
  const w = watching.get(section);
  if (!w) return;
  clearInterval(w.clock);
  if (w.source) w.source.close();
  watching.delete(section);
}

function ended(section) {
  stopWatching(section);
  section.querySelector(".explain-cancel").hidden = true;
  section.querySelector(".explain-button").disabled = !document.querySelector(
    'meta[name="csrf-token"]',
  );
}

function showEnd(section, job, fresh) {
  const out = section.querySelector(".explain-result");
  out.replaceChildren();
  out.dataset.state = job.state;
  if (job.state === "done" && job.result) {
    showResult(out, job.result);
    if (fresh) {
      refreshCards().then((ok) => {
        if (!ok) explainText(out, "p", "Reload the page to see it in the cards.", "small muted");
      });
    }
  } else if (job.state === "failed") {
    explainText(out, "p", `Failed: ${job.error}`, "error explain-failed");
  } else if (job.state === "cancelled") {
    explainText(out, "p", `Job ${job.id} was cancelled; nothing was saved.`, "muted explain-cancelled");
  }
}

// Follow a queued or running job until it ends.
function watch(section, job) {
  stopWatching(section);
  const button = section.querySelector(".explain-button");
  const cancel = section.querySelector(".explain-cancel");
  const out = section.querySelector(".explain-result");
  button.disabled = true;
  cancel.hidden = !document.querySelector('meta[name="csrf-token"]');
  cancel.dataset.url = job.cancel_url;
  out.replaceChildren();
  out.dataset.state = job.state;
  const progress = explainText(out, "p", "", "explain-progress muted");
  const w = { job, at: performance.now(), source: null, clock: null, shown: 0 };
  // Waiting time while queued, working time once running: the clock never goes back within
  // one state (the server's reading may lag the page's own count by a poll).
  const tick = () => {
    const seconds = Math.max(w.shown, w.job.elapsed_s + (performance.now() - w.at) / 1000);
    w.shown = seconds;
    progress.textContent = `${seconds.toFixed(1)} s · ${w.job.text}`;
  };
  const update = (data) => {
    if (data.state !== w.job.state) w.shown = 0;
    w.job = data;
    w.at = performance.now();
    out.dataset.state = data.state;
    tick();
  };
  tick();
  w.clock = setInterval(tick, 100);
  const source = new EventSource(job.events_url);
  w.source = source;
  source.addEventListener("stage", (e) => update(JSON.parse(e.data)));
  source.addEventListener("done", (e) => {
    // the stream's done carries the saved explanation (no second request: the server may be
    // going away, as when it is restarted)
    ended(section);
    showEnd(section, { ...w.job, state: "done", result: JSON.parse(e.data) }, true);
  });
  for (const name of ["failed", "cancelled"]) {
    source.addEventListener(name, (e) => {
      ended(section);
      showEnd(section, JSON.parse(e.data), true);
    });
  }
  // A stream ends every 25 s and a restarting server drops it: EventSource connects again
  // by itself (the clock goes on meanwhile).
  watching.set(section, w);
}

async function startExplain(section) {
  const button = section.querySelector(".explain-button");
  const out = section.querySelector(".explain-result");
  button.disabled = true;
  out.replaceChildren();
  explainText(out, "p", "0.0 s · sending the request", "explain-progress muted");
  try {
    const response = await fetch(section.dataset.explainUrl, {
      method: "POST",
      headers: { Accept: "application/json" },
    });
    const body = response.ok ? await response.json() : await errorBody(response);
    if (response.status === 202) {
      watch(section, body);
    } else if (response.status === 409 && body.job) {
      watch(section, body.job); // already queued or running: follow that one
    } else {
      out.replaceChildren();
      explainText(out, "p", `Error ${response.status}: ${body.detail}`, "error");
      button.disabled = false;
    }
  } catch (err) {
    out.replaceChildren();
    explainText(out, "p", `Could not reach the server: ${err}`, "error");
    button.disabled = false;
  }
}

async function cancelJob(section) {
  const cancel = section.querySelector(".explain-cancel");
  const response = await fetch(cancel.dataset.url, { method: "POST" });
  if (!response.ok) {
    const body = await errorBody(response);
    explainText(section.querySelector(".explain-result"), "p",
      `Error ${response.status}: ${body.detail}`, "error");
  }
  // the stream reports the cancellation
}

// The latent's newest job, shown again on load.
async function resume(section) {
  try {
    const response = await fetch(section.dataset.jobUrl, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const { job } = await response.json();
    if (!job) return;
    if (job.state === "queued" || job.state === "running") watch(section, job);
    else showEnd(section, job, false);
  } catch (_err) {
    // the page works without it: the button still queues a new job
  }
}

document.addEventListener("click", (event) => {
  const section = event.target.closest("[data-explain-url]");
  if (!section) return;
  if (event.target.closest(".explain-button")) startExplain(section);
  else if (event.target.closest(".explain-cancel")) cancelJob(section);
});

for (const section of document.querySelectorAll("[data-job-url]")) resume(section);

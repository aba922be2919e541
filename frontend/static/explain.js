// Re-explain a latent with the LLM (backend/routes/explain.py): POST to the section's
// data-explain-url asking for server-sent events, show the elapsed time and the stage the server
// reports ("verifying on 4 cases (2/4 answered)", "null 3/8: ..."), then the new explanation with
// its confidence, null and verdict as the server wrote them, and swap the page's concept cards and
// explanation history for the server's fresh ones (no reload). Errors before the stream (503: no
// LLM or busy, 429: rate limit or quota, 401/403) and in it (502: LLM unreachable, 504: past the
// deadline) show the server's message, which says when to try again.
"use strict";

function explainText(el, tag, text, cls) {
  const node = document.createElement(tag);
  node.textContent = text;
  if (cls) node.className = cls;
  el.appendChild(node);
  return node;
}

// Calls onEvent(name, data) for each server-sent event of a fetch() response's body.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut = buffer.indexOf("\n\n");
    while (cut >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      cut = buffer.indexOf("\n\n");
    }
  }
}

// The page's concept cards and explanation history, rendered again by the server, in place.
async function refreshCards() {
  const url = new URL(window.location.href);
  url.searchParams.set("_fragment", "1");
  const response = await fetch(url, { headers: { Accept: "text/html" } });
  if (!response.ok) return false;
  const doc = new DOMParser().parseFromString(await response.text(), "text/html");
  for (const selector of ["section.concepts", "section.history"]) {
    const fresh = doc.querySelector(selector);
    const old = document.querySelector(selector);
    if (fresh && old) old.replaceWith(document.importNode(fresh, true));
  }
  return true;
}

async function errorDetail(response) {
  try {
    const body = await response.json();
    if (body && body.detail) return body.detail;
  } catch (_err) {
    // not JSON: the status text says what there is
  }
  return response.statusText;
}

function showResult(out, body) {
  explainText(out, "p", body.text || "(no parseable explanation)", "concept");
  const score = body.verdict_text || `not scored (${body.status.replaceAll("_", " ")})`;
  const when = new Date(body.created_at).toLocaleString();
  explainText(
    out,
    "p",
    `${score} · model ${body.model} · ${body.elapsed_s.toFixed(1)} s · ${when}`,
    "small muted explain-verdict",
  );
  if (body.null_missing) explainText(out, "p", `No null: ${body.null_missing}.`, "small muted");
}

async function runExplain(section) {
  const button = section.querySelector(".explain-button");
  const out = section.querySelector(".explain-result");
  button.disabled = true;
  out.replaceChildren();
  const started = performance.now();
  let stage = "sending the request";
  const progress = explainText(out, "p", "", "explain-progress muted");
  const tick = () => {
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    progress.textContent = `${seconds} s · ${stage}`;
  };
  tick();
  const clock = setInterval(tick, 100);
  try {
    const response = await fetch(section.dataset.explainUrl, {
      method: "POST",
      headers: { Accept: "text/event-stream" },
    });
    if (!response.ok) {
      out.replaceChildren();
      explainText(out, "p", `Error ${response.status}: ${await errorDetail(response)}`, "error");
      return;
    }
    let result = null;
    let failure = null;
    await readEvents(response, (name, data) => {
      if (name === "stage") {
        stage = data.text;
        tick();
      } else if (name === "done") result = data;
      else if (name === "error") failure = data;
    });
    clearInterval(clock);
    out.replaceChildren();
    if (failure) {
      explainText(out, "p", `Error ${failure.status}: ${failure.detail}`, "error");
    } else if (result) {
      showResult(out, result);
      if (!(await refreshCards())) {
        explainText(out, "p", "Reload the page to see it in the cards.", "small muted");
      }
    } else {
      explainText(out, "p", "The server closed the stream without an answer.", "error");
    }
  } catch (err) {
    out.replaceChildren();
    explainText(out, "p", `Could not reach the server: ${err}`, "error");
  } finally {
    clearInterval(clock);
    button.disabled = false;
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest(".explain-button");
  if (!button) return;
  const section = button.closest("[data-explain-url]");
  if (section) runExplain(section);
});

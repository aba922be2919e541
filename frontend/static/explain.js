// Re-explain a latent with the LLM: POST to the section's data-explain-url, then show the new
// explanation with its confidence, model and time, or the server's error message (503: no LLM
// configured or busy, 502: LLM unreachable, 504: past the deadline, 429: rate limit or quota;
// their messages say when to try again). The button is enabled again whatever the answer.
"use strict";

function explainText(el, tag, text, cls) {
  const node = document.createElement(tag);
  node.textContent = text;
  if (cls) node.className = cls;
  el.appendChild(node);
  return node;
}

async function runExplain(section) {
  const button = section.querySelector(".explain-button");
  const out = section.querySelector(".explain-result");
  button.disabled = true;
  out.replaceChildren();
  explainText(out, "p", "Asking the LLM… (this takes one request per example)", "muted");
  try {
    const response = await fetch(section.dataset.explainUrl, {
      method: "POST",
      headers: { Accept: "application/json" },
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_err) {
      body = null;
    }
    out.replaceChildren();
    if (!response.ok) {
      const detail = body && body.detail ? body.detail : response.statusText;
      explainText(out, "p", `Error ${response.status}: ${detail}`, "error");
      return;
    }
    explainText(out, "p", body.text || "(no parseable explanation)", "concept");
    const score =
      body.confidence === null || body.confidence === undefined
        ? `not scored (${body.status})`
        : `confidence ${(100 * body.confidence).toFixed(0)}% (${body.status})`;
    const when = new Date(body.created_at).toLocaleString();
    explainText(
      out,
      "p",
      `${score} · model ${body.model} · ${body.elapsed_s.toFixed(1)} s · ${when}`,
      "small muted",
    );
  } catch (err) {
    out.replaceChildren();
    explainText(out, "p", `Could not reach the server: ${err}`, "error");
  } finally {
    button.disabled = false;
  }
}

document.addEventListener("click", (event) => {
  const button = event.target.closest(".explain-button");
  if (!button) return;
  const section = button.closest("[data-explain-url]");
  if (section) runExplain(section);
});

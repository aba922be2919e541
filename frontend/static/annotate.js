// The annotation page without a mouse (backend/routes/studies.py): 1–4 rate and move on,
// S focuses the skip reason (Enter submits it), Backspace goes back. The forms work without
// this file; it only presses their buttons.
(function () {
  "use strict";
  const form = document.getElementById("rate-form");
  if (!form) return;
  const reason = document.getElementById("skip-reason");
  document.addEventListener("keydown", (event) => {
    const target = event.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement ||
      target instanceof HTMLSelectElement;
    if (typing) {
      if (event.key === "Escape") target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const button = form.querySelector(`button[data-key="${event.key}"]`);
    if (button) {
      event.preventDefault();
      form.requestSubmit(button);
    } else if (event.key === "s" || event.key === "S") {
      event.preventDefault();
      if (reason) reason.focus();
    } else if (event.key === "Backspace") {
      const prev = document.getElementById("prev");
      if (prev) {
        event.preventDefault();
        window.location.assign(prev.href);
      }
    }
  });
})();

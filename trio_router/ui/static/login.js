// The login form, sent with fetch so that a wrong key is shown on the page; without script the
// form posts as it is and the server answers the same way.
"use strict";
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const shown = document.getElementById("login-error");
  shown.hidden = true;
  const response = await fetch(form.action, {
    method: "POST",
    body: new URLSearchParams(new FormData(form)),
    credentials: "same-origin",
  });
  if (response.ok) {
    window.location.assign("/ui");
    return;
  }
  let message = `login failed (${response.status})`;
  try {
    message = (await response.json()).error.message;
  } catch (_) {
    // not the router's JSON error: keep the status
  }
  shown.textContent = message;
  shown.hidden = false;
  form.key.select();
});

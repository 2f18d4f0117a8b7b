// Starts the Data Cortex mail login; the answer sets the session cookie the ops page reads.
"use strict";
document.getElementById("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const email = document.getElementById("email").value;
  const error = document.getElementById("login-error");
  error.hidden = true;
  const answer = await fetch("/api/1/login", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    credentials: "same-origin",
    body: JSON.stringify({email}),
  });
  const body = await answer.json();
  if (!answer.ok) {
    error.textContent = (body.error && body.error.message) || "The sign-in could not start.";
    error.hidden = false;
    return;
  }
  document.getElementById("login-email").textContent = email;
  document.getElementById("manual-code").textContent = body.manual_code;
  document.getElementById("login-form").hidden = true;
  document.getElementById("login-sent").hidden = false;
});

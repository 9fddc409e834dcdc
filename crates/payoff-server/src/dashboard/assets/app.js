// The dashboard's only script. Pages work without it; it adds two things:
// the statement's verification badge is fetched after the page has shown,
// and the customer picker opens the chosen customer without a button.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const badge of document.querySelectorAll("[data-verify]")) {
    fetch(badge.dataset.verify, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then((r) => r.json())
      .then((v) => {
        badge.textContent = v.verified ? "\u2714 Verified" : "\u2718 Not verified";
        badge.className = "badge " + (v.verified ? "good" : "bad");
        badge.title = v.detail;
        const detail = document.getElementById("verification-detail");
        if (detail) detail.textContent = v.detail;
      })
      .catch(() => {
        badge.textContent = "Verification could not be loaded";
        badge.className = "badge bad";
      });
  }
  for (const select of document.querySelectorAll("select[data-autosubmit]")) {
    select.addEventListener("change", () => select.form.submit());
  }
});

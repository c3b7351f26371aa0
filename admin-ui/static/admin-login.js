// The admin login's security key step: asks Relais for WebAuthn options, runs the ceremony
// in the browser (webauthn-common.js, loaded first), posts the answer back. Served as a file:
// the CSP forbids inline scripts.
(function () {
  "use strict";
  var step = document.getElementById("key-step");
  if (!step || !window.PublicKeyCredential || !window.RelaisWebAuthn) { return; }
  var W = window.RelaisWebAuthn;
  var pendingId = step.dataset.pendingId, csrf = step.dataset.csrf;
  var errorBox = document.getElementById("key-error");

  function post(path, body) {
    body.pending_id = pendingId; body.csrf = csrf;
    return W.postJson(path, body);
  }
  function authenticate() {
    return post("/admin/login/key/options", {}).then(W.get).then(function (cred) {
      return post("/admin/login/key/finish", { credential: cred });
    }).then(function (j) { window.location.assign(j.redirect); });
  }
  document.getElementById("key-use").addEventListener("click", function () {
    errorBox.hidden = true;
    authenticate().catch(function (e) { errorBox.textContent = e.message; errorBox.hidden = false; });
  });
})();

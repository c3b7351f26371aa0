// Adding a security key from /account: asks Relais for WebAuthn registration options, runs
// the ceremony in the browser (webauthn-common.js, loaded first), posts the answer back.
// Served as a file: the CSP forbids inline scripts. No framework, no build step.
(function () {
  "use strict";
  var box = document.getElementById("add-key-form");
  if (!box || !window.PublicKeyCredential || !window.RelaisWebAuthn) { return; }
  var W = window.RelaisWebAuthn;
  var csrf = box.dataset.csrf;
  var errorBox = document.getElementById("add-key-error");

  function post(path, body) {
    body.csrf = csrf;
    return W.postJson(path, body, { "X-CSRF-Token": csrf });
  }
  document.getElementById("add-key-button").addEventListener("click", function () {
    errorBox.hidden = true;
    var code = document.getElementById("add-key-code");
    var name = document.getElementById("add-key-name").value;
    post("/account/keys/options", { enrolment_code: code && code.value ? code.value : null })
      .then(W.create).then(function (cred) {
        return post("/account/keys/finish", { name: name, credential: cred });
      }).then(function () { window.location.assign("/account?done=1"); })
      .catch(function (e) { errorBox.textContent = e.message; errorBox.hidden = false; });
  });
})();

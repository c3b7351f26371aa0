// The admin login's security key step: asks Relais for WebAuthn options, runs the ceremony
// in the browser, posts the answer back. Served as a file: the CSP forbids inline scripts.
(function () {
  "use strict";
  var step = document.getElementById("key-step");
  if (!step || !window.PublicKeyCredential) { return; }
  var pendingId = step.dataset.pendingId, csrf = step.dataset.csrf;
  var errorBox = document.getElementById("key-error");

  function b64urlToBuf(s) {
    var b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
    var a = new Uint8Array(b.length);
    for (var i = 0; i < b.length; i++) { a[i] = b.charCodeAt(i); }
    return a.buffer;
  }
  function bufToB64url(buf) {
    var a = new Uint8Array(buf), s = "";
    for (var i = 0; i < a.length; i++) { s += String.fromCharCode(a[i]); }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function post(path, body) {
    body.pending_id = pendingId; body.csrf = csrf;
    return fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) { throw new Error(j.error || r.status); }
        return j;
      });
    });
  }
  function authenticate() {
    return post("/admin/login/key/options", {}).then(function (o) {
      var pk = o.publicKey;
      pk.challenge = b64urlToBuf(pk.challenge);
      (pk.allowCredentials || []).forEach(function (c) { c.id = b64urlToBuf(c.id); });
      return navigator.credentials.get({ publicKey: pk });
    }).then(function (cred) {
      return post("/admin/login/key/finish", { credential: {
        id: cred.id, rawId: bufToB64url(cred.rawId), type: cred.type, extensions: {},
        response: {
          authenticatorData: bufToB64url(cred.response.authenticatorData),
          clientDataJSON: bufToB64url(cred.response.clientDataJSON),
          signature: bufToB64url(cred.response.signature),
          userHandle: cred.response.userHandle ? bufToB64url(cred.response.userHandle) : null
        } } });
    }).then(function (j) { window.location.assign(j.redirect); });
  }
  document.getElementById("key-use").addEventListener("click", function () {
    errorBox.hidden = true;
    authenticate().catch(function (e) { errorBox.textContent = e.message; errorBox.hidden = false; });
  });
})();

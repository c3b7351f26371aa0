// Adding a security key from /account: asks Relais for WebAuthn registration options, runs
// the ceremony in the browser, posts the answer back. Served as a file: the CSP forbids
// inline scripts. No framework, no build step.
(function () {
  "use strict";
  var box = document.getElementById("add-key-form");
  if (!box || !window.PublicKeyCredential) { return; }
  var csrf = box.dataset.csrf;
  var errorBox = document.getElementById("add-key-error");

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
    body.csrf = csrf;
    return fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf }, body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) { throw new Error(j.error || r.status); }
        return j;
      });
    });
  }
  document.getElementById("add-key-button").addEventListener("click", function () {
    errorBox.hidden = true;
    var code = document.getElementById("add-key-code");
    var name = document.getElementById("add-key-name").value;
    post("/account/keys/options", { enrolment_code: code && code.value ? code.value : null })
      .then(function (o) {
        var pk = o.publicKey;
        pk.challenge = b64urlToBuf(pk.challenge);
        pk.user.id = b64urlToBuf(pk.user.id);
        (pk.excludeCredentials || []).forEach(function (c) { c.id = b64urlToBuf(c.id); });
        return navigator.credentials.create({ publicKey: pk });
      }).then(function (cred) {
        return post("/account/keys/finish", { name: name, credential: {
          id: cred.id, rawId: bufToB64url(cred.rawId), type: cred.type, extensions: {},
          response: {
            attestationObject: bufToB64url(cred.response.attestationObject),
            clientDataJSON: bufToB64url(cred.response.clientDataJSON),
            transports: cred.response.getTransports ? cred.response.getTransports() : []
          } } });
      }).then(function () { window.location.assign("/account?done=1"); })
      .catch(function (e) { errorBox.textContent = e.message; errorBox.hidden = false; });
  });
})();

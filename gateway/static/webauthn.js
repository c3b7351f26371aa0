// The security key step: asks the server for WebAuthn options, runs the ceremony in the
// browser, posts the answer back. No framework, no build step. Served by Relais as a file
// because the Content-Security-Policy forbids inline scripts.
(function () {
  "use strict";
  var step = document.getElementById("key-step");
  if (!step || !window.PublicKeyCredential) { return; }
  var loginId = step.dataset.loginId, csrf = step.dataset.csrf;
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
  function show(msg) { errorBox.textContent = msg; errorBox.hidden = false; }
  function post(path, body) {
    body.login_id = loginId; body.csrf = csrf;
    return fetch(path, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) { throw new Error(j.error_description || j.error || r.status); }
        return j;
      });
    });
  }
  function next(j) {
    if (j.redirect) { window.location.assign(j.redirect); return; }
    if (j.next === "authenticate") { return authenticate(false); }
    if (j.next === "register") { document.getElementById("key-enrol").hidden = false; }
  }

  function authenticate(thenEnrol) {
    return post("/login/webauthn/options", { ceremony: "authenticate" }).then(function (o) {
      var pk = o.publicKey;
      pk.challenge = b64urlToBuf(pk.challenge);
      (pk.allowCredentials || []).forEach(function (c) { c.id = b64urlToBuf(c.id); });
      return navigator.credentials.get({ publicKey: pk });
    }).then(function (cred) {
      return post("/login/webauthn/finish", { then_enrol: thenEnrol, credential: {
        id: cred.id, rawId: bufToB64url(cred.rawId), type: cred.type, extensions: {},
        response: {
          authenticatorData: bufToB64url(cred.response.authenticatorData),
          clientDataJSON: bufToB64url(cred.response.clientDataJSON),
          signature: bufToB64url(cred.response.signature),
          userHandle: cred.response.userHandle ? bufToB64url(cred.response.userHandle) : null
        } } });
    }).then(next);
  }

  function enrol() {
    var code = document.getElementById("enrolment-code");
    var name = document.getElementById("key-name").value;
    return post("/login/webauthn/options", { ceremony: "register", enrolment_code: code ? code.value : null })
      .then(function (o) {
        var pk = o.publicKey;
        pk.challenge = b64urlToBuf(pk.challenge);
        pk.user.id = b64urlToBuf(pk.user.id);
        (pk.excludeCredentials || []).forEach(function (c) { c.id = b64urlToBuf(c.id); });
        return navigator.credentials.create({ publicKey: pk });
      }).then(function (cred) {
        return post("/login/webauthn/finish", { name: name, credential: {
          id: cred.id, rawId: bufToB64url(cred.rawId), type: cred.type, extensions: {},
          response: {
            attestationObject: bufToB64url(cred.response.attestationObject),
            clientDataJSON: bufToB64url(cred.response.clientDataJSON),
            transports: cred.response.getTransports ? cred.response.getTransports() : []
          } } });
      }).then(next);
  }

  var use = document.getElementById("key-use");
  if (use) {
    use.addEventListener("click", function () {
      var thenEnrol = document.getElementById("then-enrol").checked;
      authenticate(thenEnrol).catch(function (e) { show(e.message); });
    });
  }
  document.getElementById("key-enrol-button").addEventListener("click", function () {
    enrol().catch(function (e) { show(e.message); });
  });
})();

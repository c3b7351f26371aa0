// The security key step: asks the server for WebAuthn options, runs the ceremony in the
// browser, posts the answer back (the ceremonies: webauthn-common.js, loaded first). Served
// by Relais as a file because the Content-Security-Policy forbids inline scripts.
(function () {
  "use strict";
  var step = document.getElementById("key-step");
  if (!step || !window.PublicKeyCredential || !window.RelaisWebAuthn) { return; }
  var W = window.RelaisWebAuthn;
  var loginId = step.dataset.loginId, csrf = step.dataset.csrf;
  // The first ceremony's options come with the page (one request less); later ones (after an
  // error, or after enrolling a key) are fetched.
  var pageOptions = step.dataset.options ? JSON.parse(step.dataset.options) : null;
  var errorBox = document.getElementById("key-error");

  function show(msg) { errorBox.textContent = msg; errorBox.hidden = false; }
  function post(path, body) {
    body.login_id = loginId; body.csrf = csrf;
    return W.postJson(path, body);
  }
  function next(j) {
    if (j.redirect) { window.location.assign(j.redirect); return; }
    if (j.next === "authenticate") { return authenticate(false); }
    if (j.next === "register") { document.getElementById("key-enrol").hidden = false; }
  }

  function authenticate(thenEnrol) {
    var options = pageOptions ? Promise.resolve(pageOptions) : post("/login/webauthn/options", { ceremony: "authenticate" });
    pageOptions = null;
    return options.then(W.get).then(function (cred) {
      return post("/login/webauthn/finish", { then_enrol: thenEnrol, credential: cred });
    }).then(next);
  }

  function enrol() {
    var code = document.getElementById("enrolment-code");
    var name = document.getElementById("key-name").value;
    return post("/login/webauthn/options", { ceremony: "register", enrolment_code: code ? code.value : null })
      .then(W.create).then(function (cred) {
        return post("/login/webauthn/finish", { name: name, credential: cred });
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

// What every WebAuthn page of Relais shares (login key step, admin login, /account): the
// base64url codec, a JSON POST that turns an error answer into an Error, and the two
// ceremonies between the server's JSON options and the JSON credential it expects back.
// Loaded before the page's own script; no framework, no build step.
(function () {
  "use strict";
  function toBuf(s) {
    var b = atob(s.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((s.length + 3) % 4));
    var a = new Uint8Array(b.length);
    for (var i = 0; i < b.length; i++) { a[i] = b.charCodeAt(i); }
    return a.buffer;
  }
  function toB64url(buf) {
    var a = new Uint8Array(buf), s = "";
    for (var i = 0; i < a.length; i++) { s += String.fromCharCode(a[i]); }
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function postJson(path, body, headers) {
    // Refusals come back in the page's language, whatever the browser's own preference.
    var h = { "Content-Type": "application/json", "Accept-Language": document.documentElement.lang || "fr" };
    Object.keys(headers || {}).forEach(function (k) { h[k] = headers[k]; });
    return fetch(path, {
      method: "POST", credentials: "same-origin", headers: h, body: JSON.stringify(body)
    }).then(function (r) {
      return r.json().then(function (j) {
        if (!r.ok) { throw new Error(j.error_description || j.error || r.status); }
        return j;
      });
    });
  }
  // Options of an authentication ceremony -> the assertion, encoded for /finish.
  function get(options) {
    var pk = options.publicKey;
    pk.challenge = toBuf(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = toBuf(c.id); });
    return navigator.credentials.get({ publicKey: pk }).then(function (cred) {
      return {
        id: cred.id, rawId: toB64url(cred.rawId), type: cred.type, extensions: {},
        response: {
          authenticatorData: toB64url(cred.response.authenticatorData),
          clientDataJSON: toB64url(cred.response.clientDataJSON),
          signature: toB64url(cred.response.signature),
          userHandle: cred.response.userHandle ? toB64url(cred.response.userHandle) : null
        }
      };
    });
  }
  // Options of a registration ceremony -> the new credential, encoded for /finish.
  function create(options) {
    var pk = options.publicKey;
    pk.challenge = toBuf(pk.challenge);
    pk.user.id = toBuf(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = toBuf(c.id); });
    return navigator.credentials.create({ publicKey: pk }).then(function (cred) {
      return {
        id: cred.id, rawId: toB64url(cred.rawId), type: cred.type, extensions: {},
        response: {
          attestationObject: toB64url(cred.response.attestationObject),
          clientDataJSON: toB64url(cred.response.clientDataJSON),
          transports: cred.response.getTransports ? cred.response.getTransports() : []
        }
      };
    });
  }
  window.RelaisWebAuthn = { postJson: postJson, get: get, create: create };
})();

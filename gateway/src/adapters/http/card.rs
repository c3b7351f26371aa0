//! The CPS/CPx card step over HTTP: the page offering the card, the card endpoint (on the card
//! listener, or behind a trusted proxy passing the certificate in a header) and the
//! completion on the issuer's host. The rules are in `domain::oidc::card`.
use super::AppState;
use super::errors;
use super::extract::{self, LOGIN_BINDING_COOKIE, SSO_COOKIE};
use super::i18n::Lang;
use super::pages::html;
use crate::adapters::cards::tls::PeerCertificates;
use crate::domain::card::{CardRefusal, CardSource};
use crate::domain::oidc::{CardError, LoginOutcome, Presented};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, http::header, web};
use askama::Template;
use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// How card logins reach Relais (from `[cards]`).
#[derive(Debug, Clone)]
pub struct CardHttp {
    /// Base URL of the card endpoint as browsers see it (the card listener or the proxy).
    pub base_url: String,
    /// Proxies allowed to pass the client certificate in `header`.
    pub trusted_proxies: Vec<crate::protocol::IpRange>,
    pub header: String,
    /// The login page offers the card alone.
    pub card_alone: bool,
}

impl CardHttp {
    pub fn url(&self, pending_id: &str) -> String {
        format!("{}/login/card?id={pending_id}", self.base_url)
    }
}

/// Every string of the card pages, French and English.
pub struct CardTexts {
    pub title: &'static str,
    pub intro: &'static str,
    pub button: &'static str,
    pub retry: &'static str,
}

static FR: CardTexts = CardTexts {
    title: "Carte CPS",
    intro: "Insérez votre carte CPS (ou CPx) dans le lecteur, puis cliquez ci-dessous et saisissez son code PIN.",
    button: "Se connecter avec ma carte CPS",
    retry: "Réessayer avec ma carte",
};

static EN: CardTexts = CardTexts {
    title: "CPS card",
    intro: "Insert your CPS (or CPx) card in the reader, then click below and enter its PIN.",
    button: "Sign in with my CPS card",
    retry: "Try again with my card",
};

pub fn texts(lang: Lang) -> &'static CardTexts {
    match lang {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

/// What the person reads when a card is refused. Plain, and says what to do.
pub fn refusal_message(r: CardRefusal, lang: Lang) -> &'static str {
    use CardRefusal as R;
    match (lang, r) {
        (Lang::Fr, R::NoCertificate) => {
            "Aucune carte n'a été présentée. Vérifiez que la carte est insérée et que le logiciel de la carte (Cryptolib CPS) est installé, puis réessayez."
        }
        (Lang::En, R::NoCertificate) => {
            "No card was presented. Check that the card is inserted and the card software (Cryptolib CPS) is installed, then try again."
        }
        (Lang::Fr, R::Unreadable) => "Le certificat présenté est illisible. Contactez le support informatique.",
        (Lang::En, R::Unreadable) => "The certificate presented cannot be read. Contact IT support.",
        (Lang::Fr, R::Expired) => {
            "Votre carte a expiré. Demandez son renouvellement (ANS / Ordre) et utilisez en attendant votre mot de passe et votre clé de sécurité."
        }
        (Lang::En, R::Expired) => "Your card has expired. Ask for its renewal and meanwhile sign in with your password and security key.",
        (Lang::Fr, R::NotYetValid) => "Votre carte n'est pas encore valide. Réessayez plus tard ou contactez le support informatique.",
        (Lang::En, R::NotYetValid) => "Your card is not valid yet. Try again later or contact IT support.",
        (Lang::Fr, R::Revoked) => {
            "Votre carte a été révoquée (opposition). Elle ne peut plus être utilisée ; contactez le support informatique."
        }
        (Lang::En, R::Revoked) => "Your card has been revoked. It can no longer be used; contact IT support.",
        (Lang::Fr, R::WrongIssuer) => {
            "Cette carte n'est pas une carte CPS reconnue par l'établissement (autorité de certification inconnue)."
        }
        (Lang::En, R::WrongIssuer) => "This card is not a CPS card trusted by the establishment (unknown certification authority).",
        (Lang::Fr, R::RevocationUnknown) => {
            "L'état de révocation de votre carte ne peut pas être vérifié. Contactez le support informatique."
        }
        (Lang::En, R::RevocationUnknown) => "Your card's revocation status cannot be checked. Contact IT support.",
        (Lang::Fr, R::CrlStale) => {
            "La liste des cartes révoquées n'est plus à jour : la connexion par carte est suspendue. Contactez le support informatique."
        }
        (Lang::En, R::CrlStale) => "The list of revoked cards is out of date: card sign-in is suspended. Contact IT support.",
        (Lang::Fr, R::NotForLogin) => {
            "Ce certificat ne permet pas de s'authentifier. Utilisez le certificat d'authentification de votre carte."
        }
        (Lang::En, R::NotForLogin) => "This certificate cannot be used to sign in. Use your card's authentication certificate.",
        (Lang::Fr, R::NoNationalId) => "Aucun identifiant national (RPPS, ADELI) n'a été trouvé sur cette carte.",
        (Lang::En, R::NoNationalId) => "No national identifier (RPPS, ADELI) was found on this card.",
        (Lang::Fr, R::NotLinked) => {
            "Cette carte n'est rattachée à aucun compte. Connectez-vous avec votre identifiant et votre mot de passe, puis votre carte."
        }
        (Lang::En, R::NotLinked) => "This card is not linked to any account. Sign in with your username and password, then your card.",
        (Lang::Fr, R::Mismatch) => {
            "Cette carte ne correspond pas à votre compte (identifiant national différent). Utilisez votre propre carte."
        }
        (Lang::En, R::Mismatch) => "This card does not match your account (different national identifier). Use your own card.",
        (Lang::Fr, R::NoMapping) => {
            "Votre compte n'est rattaché à aucune identité nationale : la carte ne peut pas encore être utilisée. Contactez le support informatique."
        }
        (Lang::En, R::NoMapping) => {
            "Your account is not linked to a national identity yet, so the card cannot be used. Contact IT support."
        }
        (Lang::Fr, R::PasswordFirst) => "Saisissez d'abord votre identifiant et votre mot de passe ; la carte vous sera demandée ensuite.",
        (Lang::En, R::PasswordFirst) => "Enter your username and password first; the card is asked for next.",
    }
}

#[derive(Template)]
#[template(path = "card.html")]
struct CardView<'a> {
    lang: &'static str,
    t: &'static CardTexts,
    error: Option<&'a str>,
    card_url: Option<&'a str>,
}

fn card_page(status: StatusCode, lang: Lang, error: Option<&str>, card_url: Option<&str>) -> HttpResponse {
    html(
        status,
        &CardView {
            lang: lang.code(),
            t: texts(lang),
            error,
            card_url,
        },
    )
}

fn config(state: &AppState) -> Option<&CardHttp> {
    state.cards.as_ref()
}

/// `GET /login/card/start?id=`: the card step after the password, on the issuer's host.
#[tracing::instrument(skip_all)]
pub async fn start(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let params = extract::query_params(&req, state.provider.settings.max_param_len);
    let binding = extract::cookie(&req, LOGIN_BINDING_COOKIE);
    let Some(cards) = config(&state) else {
        return pages_not_enabled(&req);
    };
    match state.provider.login_page(params.get("id").unwrap_or(""), binding.as_deref()).await {
        Ok(Ok(p)) => {
            let lang = Lang::pick(p.ui_locales.as_deref(), &req);
            card_page(StatusCode::OK, lang, None, Some(&cards.url(&p.pending_id)))
        }
        Ok(Err(e)) => errors::page(&e, Lang::pick(None, &req)),
        Err(e) => errors::domain_page(e, Lang::pick(None, &req)),
    }
}

fn pages_not_enabled(req: &HttpRequest) -> HttpResponse {
    errors::page(
        &crate::protocol::OAuthError::invalid_request("card login is not enabled"),
        Lang::pick(None, req),
    )
}

/// Percent-decoding of nginx's `$ssl_client_escaped_cert` (`+` is not a space there).
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// The certificate in a proxy header: URL-encoded PEM (nginx), plain PEM, or base64 DER
/// (HAProxy `ssl_c_der,base64`). `None` when it cannot be read.
pub fn header_certificates(value: &str) -> Option<Vec<Vec<u8>>> {
    let decoded = percent_decode(value.trim())?;
    if decoded.windows(10).any(|w| w == b"-----BEGIN") {
        let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&decoded)
            .map(|c| c.map(|c| c.as_ref().to_vec()))
            .collect::<Result<_, _>>()
            .ok()?;
        return (!certs.is_empty()).then_some(certs);
    }
    let der = base64::engine::general_purpose::STANDARD.decode(decoded).ok()?;
    Some(vec![der])
}

/// The certificate of this request: from the TLS connection of the card listener, or from the
/// header when the TCP peer is a trusted proxy. A header from anyone else is ignored and
/// audited.
async fn presented(req: &HttpRequest, state: &AppState, cards: &CardHttp) -> Presented {
    if let Some(PeerCertificates(chain)) = req.conn_data::<PeerCertificates>()
        && !chain.is_empty()
    {
        return Presented::Chain {
            chain: chain.clone(),
            source: CardSource::Tls,
        };
    }
    let Some(value) = req.headers().get(cards.header.as_str()) else {
        return Presented::Nothing;
    };
    let peer = req.peer_addr().map(|a| a.ip());
    if !peer.is_some_and(|p| crate::protocol::in_ranges(&cards.trusted_proxies, p)) {
        state.provider.card_header_ignored(&extract::context(req), &cards.header).await;
        return Presented::Nothing;
    }
    // Bounded: a certificate chain is a few kilobytes.
    let chain = value.to_str().ok().filter(|v| v.len() <= 32 * 1024).and_then(header_certificates);
    match chain {
        Some(chain) => Presented::Chain {
            chain,
            source: CardSource::Proxy,
        },
        // Unreadable: let the checker say so.
        None => Presented::Chain {
            chain: vec![Vec::new()],
            source: CardSource::Proxy,
        },
    }
}

/// `GET /login/card?id=`: the card endpoint (card listener or trusted proxy).
#[tracing::instrument(skip_all)]
pub async fn present(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let lang = Lang::pick(None, &req);
    let Some(cards) = config(&state) else {
        return pages_not_enabled(&req);
    };
    let params = extract::query_params(&req, state.provider.settings.max_param_len);
    let id = params.get("id").unwrap_or("").to_owned();
    let presented = presented(&req, &state, cards).await;
    let ctx = extract::context(&req);
    match state.provider.card_presented(&id, presented, &ctx).await {
        Ok(Ok(next)) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, next))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .finish(),
        Ok(Err(CardError::Refused(r))) => card_page(StatusCode::FORBIDDEN, lang, Some(refusal_message(r, lang)), Some(&cards.url(&id))),
        Ok(Err(CardError::Login(e))) => errors::page(&e, lang),
        Err(e) => errors::domain_page(e, lang),
    }
}

/// `GET /login/card/complete?id=&proof=`: the browser of the login redeems its card proof.
#[tracing::instrument(skip_all)]
pub async fn complete(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let lang = Lang::pick(None, &req);
    let params = extract::query_params(&req, state.provider.settings.max_param_len);
    let id = params.get("id").unwrap_or("").to_owned();
    let binding = extract::cookie(&req, LOGIN_BINDING_COOKIE);
    let previous = extract::cookie(&req, SSO_COOKIE);
    let ctx = extract::context(&req);
    let outcome = state
        .provider
        .card_complete(
            &id,
            params.get("proof").unwrap_or(""),
            binding.as_deref(),
            previous.as_deref(),
            &ctx,
        )
        .await;
    match outcome {
        Ok(Ok(LoginOutcome::Rejected(_))) => errors::page(&crate::protocol::OAuthError::server_error("internal error"), lang),
        Ok(Ok(o)) => super::login::respond(&state, lang, o),
        Ok(Err(CardError::Refused(r))) => {
            let retry = config(&state).map(|c| c.url(&id));
            card_page(StatusCode::FORBIDDEN, lang, Some(refusal_message(r, lang)), retry.as_deref())
        }
        Ok(Err(CardError::Login(e))) => errors::page(&e, lang),
        Err(e) => errors::domain_page(e, lang),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_escaped_pem_is_read() {
        // Not a real certificate: the PEM layer only.
        let pem = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";
        let escaped = pem.replace(' ', "%20").replace('\n', "%0A").replace('=', "%3D").replace('+', "%2B");
        assert_eq!(header_certificates(&escaped), Some(vec![vec![0x30, 0x03, 0x02, 0x01, 0x00]]));
        assert_eq!(header_certificates("MAMCAQA="), Some(vec![vec![0x30, 0x03, 0x02, 0x01, 0x00]]));
        assert_eq!(header_certificates("%zz"), None);
    }
}

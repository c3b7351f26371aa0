//! The languages of the pages: French by default, English on request (`ui_locales`, then
//! `Accept-Language`).
use crate::domain::admin::AdminLoginError;
use crate::domain::identity_import::ReviewReason;
use crate::domain::oidc::{KeyAddError, KeyStepRefusal};
use actix_web::HttpRequest;
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Fr,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }

    /// First supported tag of a space- or comma-separated list.
    fn from_list(list: &str) -> Option<Lang> {
        list.split([' ', ','])
            .map(|t| t.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .find_map(|t| {
                if t == "fr" || t.starts_with("fr-") {
                    Some(Lang::Fr)
                } else if t == "en" || t.starts_with("en-") {
                    Some(Lang::En)
                } else {
                    None
                }
            })
    }

    pub fn pick(ui_locales: Option<&str>, req: &HttpRequest) -> Lang {
        ui_locales
            .and_then(Lang::from_list)
            .or_else(|| {
                req.headers()
                    .get("accept-language")
                    .and_then(|v| v.to_str().ok())
                    .and_then(Lang::from_list)
            })
            .unwrap_or(Lang::Fr)
    }

    pub fn text(self) -> &'static Texts {
        match self {
            Lang::Fr => &FR,
            Lang::En => &EN,
        }
    }
}

/// Every string the pages show.
pub struct Texts {
    pub login_title: &'static str,
    pub login_intro: &'static str,
    pub username: &'static str,
    pub password: &'static str,
    pub submit: &'static str,
    pub bad_credentials: &'static str,
    pub error_title: &'static str,
    pub error_intro: &'static str,
    pub logged_out_title: &'static str,
    pub logged_out_body: &'static str,
    pub logout_confirm_title: &'static str,
    pub logout_confirm_body: &'static str,
    pub logout_button: &'static str,
    pub home_title: &'static str,
    pub home_body: &'static str,
    pub not_found: &'static str,
    pub terms_title: &'static str,
    pub terms_body: &'static str,
    pub terms_version: &'static str,
    pub terms_read: &'static str,
    pub accept: &'static str,
    pub decline: &'static str,
    pub not_eligible_title: &'static str,
    pub not_eligible_body: &'static str,
    pub verified_title: &'static str,
    pub verified_body: &'static str,
    pub key_title: &'static str,
    pub key_intro: &'static str,
    pub key_use: &'static str,
    pub key_none: &'static str,
    pub key_enrol_title: &'static str,
    pub key_enrol_intro: &'static str,
    pub key_enrol_code: &'static str,
    pub key_name: &'static str,
    pub key_enrol: &'static str,
    pub key_add_another: &'static str,
    pub key_no_js: &'static str,
}

static FR: Texts = Texts {
    login_title: "Connexion",
    login_intro: "Connectez-vous pour accéder à",
    username: "Identifiant",
    password: "Mot de passe",
    submit: "Se connecter",
    bad_credentials: "Identifiant ou mot de passe incorrect.",
    error_title: "La connexion ne peut pas aboutir",
    error_intro: "Revenez à l'application et recommencez. Si le problème persiste, contactez le support informatique en donnant ce message :",
    logged_out_title: "Vous êtes déconnecté",
    logged_out_body: "Votre session est terminée. Vous pouvez fermer cette fenêtre.",
    logout_confirm_title: "Se déconnecter ?",
    logout_confirm_body: "Une application demande la fin de votre session d'authentification.",
    logout_button: "Se déconnecter",
    home_title: "Relais",
    home_body: "Passerelle d'identité de l'établissement. Accédez à vos applications depuis leur propre page.",
    not_found: "Page introuvable",
    terms_title: "Conditions d'utilisation des services nationaux",
    terms_body: "Pour accéder aux services numériques en santé via Pro Santé Connect, vous devez accepter les conditions générales d'utilisation. Votre acceptation est enregistrée.",
    terms_version: "Version",
    terms_read: "Lire les conditions",
    accept: "J'accepte",
    decline: "Je refuse",
    not_eligible_title: "Accès aux services nationaux impossible",
    verified_title: "Identité nationale vérifiée",
    verified_body: "Pro Santé Connect a confirmé votre identifiant national :",
    not_eligible_body: "Votre compte n'est rattaché à aucune identité nationale vérifiée (RPPS, ADELI). Vous pouvez continuer à utiliser les applications de l'établissement. Pour les services nationaux, contactez le support informatique.",
    key_title: "Clé de sécurité",
    key_intro: "Pour terminer la connexion, branchez votre clé de sécurité, puis touchez-la et saisissez son code PIN si elle le demande.",
    key_use: "Utiliser ma clé de sécurité",
    key_none: "Aucune clé de sécurité n'est enregistrée pour vous. Enregistrez-en une avec le code d'enrôlement remis par votre administrateur.",
    key_enrol_title: "Enregistrer une clé de sécurité",
    key_enrol_intro: "Seules les clés fournies par l'établissement sont acceptées.",
    key_enrol_code: "Code d'enrôlement (première clé)",
    key_name: "Nom de la clé",
    key_enrol: "Enregistrer la clé",
    key_add_another: "Ajouter une autre clé après connexion",
    key_no_js: "Cette étape nécessite JavaScript et un navigateur compatible WebAuthn.",
};

static EN: Texts = Texts {
    login_title: "Sign in",
    login_intro: "Sign in to continue to",
    username: "Username",
    password: "Password",
    submit: "Sign in",
    bad_credentials: "Wrong username or password.",
    error_title: "Sign-in cannot continue",
    error_intro: "Go back to the application and start again. If the problem persists, contact IT support with this message:",
    logged_out_title: "You are signed out",
    logged_out_body: "Your session has ended. You may close this window.",
    logout_confirm_title: "Sign out?",
    logout_confirm_body: "An application asks to end your sign-in session.",
    logout_button: "Sign out",
    home_title: "Relais",
    home_body: "The establishment's identity gateway. Open your applications from their own page.",
    not_found: "Page not found",
    terms_title: "Terms of use of national services",
    terms_body: "To reach national e-health services through Pro Santé Connect you must accept the terms of use. Your acceptance is recorded.",
    terms_version: "Version",
    terms_read: "Read the terms",
    accept: "I accept",
    decline: "I decline",
    not_eligible_title: "National services are not available to you",
    verified_title: "National identity verified",
    verified_body: "Pro Santé Connect confirmed your national identifier:",
    not_eligible_body: "Your account is not linked to a verified national identity (RPPS, ADELI). You can keep using the establishment's applications. For national services, contact IT support.",
    key_title: "Security key",
    key_intro: "To finish signing in, plug in your security key, then touch it and enter its PIN if asked.",
    key_use: "Use my security key",
    key_none: "No security key is registered for you. Register one with the enrolment code your administrator gave you.",
    key_enrol_title: "Register a security key",
    key_enrol_intro: "Only keys supplied by the establishment are accepted.",
    key_enrol_code: "Enrolment code (first key)",
    key_name: "Key name",
    key_enrol: "Register the key",
    key_add_another: "Add another key after signing in",
    key_no_js: "This step needs JavaScript and a browser with WebAuthn.",
};

impl Lang {
    /// A refusal of the login's key step, in this language (English: the domain's own words).
    pub fn key_step_refusal(self, r: KeyStepRefusal) -> Cow<'static, str> {
        use KeyStepRefusal::*;
        if self == Lang::En {
            return r.to_string().into();
        }
        match r {
            NotEnabled => "Les clés de sécurité ne sont pas activées ici.",
            PasswordFirst => "Saisissez d'abord votre identifiant et votre mot de passe.",
            StaleForm => "Le formulaire a expiré ou n'est pas valide : rechargez la page.",
            NoKey => {
                "Aucune clé de sécurité n'est enregistrée pour vous : enregistrez-en une avec le code d'enrôlement remis par votre administrateur."
            }
            CodeRequired => {
                "Un code d'enrôlement remis par votre administrateur est nécessaire pour enregistrer une première clé de sécurité."
            }
            CodeRejected => CODE_REJECTED_FR,
            KeyFirst => "Pour ajouter une autre clé de sécurité, connectez-vous d'abord avec une clé que vous avez déjà.",
            StepExpired => "Cette étape a expiré ou a déjà été utilisée : recommencez.",
            ModelNotAllowed => MODEL_NOT_ALLOWED_FR,
            RegistrationFailed => REGISTRATION_FAILED_FR,
            AlreadyRegistered => ALREADY_REGISTERED_FR,
            KeyRefused => {
                "La clé de sécurité a été refusée : utilisez l'une de vos clés enregistrées et non révoquées, avec son code PIN ou votre empreinte."
            }
            SessionEnded => "Votre session est terminée : recommencez depuis l'application.",
            AlreadyCompleted => "Cette connexion est déjà terminée.",
        }
        .into()
    }

    /// Why `/account` did not add a key, in this language.
    pub fn key_add_error(self, e: &KeyAddError) -> Cow<'static, str> {
        if self == Lang::En {
            return e.to_string().into();
        }
        match e {
            KeyAddError::NotEnabled => "Les clés de sécurité ne sont pas activées ici.",
            KeyAddError::CodeRequired => {
                "Un code d'enrôlement remis par votre administrateur est nécessaire pour enregistrer une première clé de sécurité."
            }
            KeyAddError::CodeRejected => CODE_REJECTED_FR,
            KeyAddError::NeedsStrongSession => {
                "Pour ajouter une autre clé de sécurité, connectez-vous avec une clé (ou votre carte) que vous avez déjà, puis revenez ici."
            }
            KeyAddError::Expired => "Cette étape a expiré ou a déjà été utilisée : recommencez.",
            KeyAddError::ModelNotAllowed => MODEL_NOT_ALLOWED_FR,
            KeyAddError::Failed => REGISTRATION_FAILED_FR,
            KeyAddError::AlreadyRegistered => ALREADY_REGISTERED_FR,
        }
        .into()
    }
}

impl Lang {
    /// Why the admin UI's login refused, in this language.
    pub fn admin_login_error(self, e: &AdminLoginError) -> Cow<'static, str> {
        if self == Lang::En {
            return e.to_string().into();
        }
        match e {
            AdminLoginError::Refused => "Identifiant ou mot de passe incorrect, ou compte sans rôle d'administration.",
            AdminLoginError::NoKey => "Aucune clé de sécurité n'est enregistrée pour ce compte : l'administration exige toujours une clé.",
            AdminLoginError::KeysNotConfigured => {
                "Les clés de sécurité ne sont pas configurées ([fido2] attestation_policy) : l'administration en a besoin."
            }
            AdminLoginError::Expired => "Cette étape de connexion a expiré : recommencez.",
            AdminLoginError::KeyRefused => "La clé de sécurité a été refusée.",
            AdminLoginError::Throttled => "Trop de tentatives échouées : patientez quelques minutes avant de réessayer.",
        }
        .into()
    }
}

impl Lang {
    /// Why an identity waits in the review queue, in this language.
    pub fn review_reason(self, r: &ReviewReason) -> Cow<'static, str> {
        use ReviewReason::*;
        if self == Lang::En {
            return r.to_string().into();
        }
        match r {
            InvalidIdentifier { source, error } => format!("{source} contient un identifiant national invalide : {error}").into(),
            NotTheMappedIdentifier { source } => format!("{source} indique un autre identifiant que celui déjà rattaché").into(),
            IdentifierOfSomeoneElse { source } => format!("{source} indique un identifiant déjà rattaché à une autre personne").into(),
            AbsentFromAnnuaire { source } => format!("{source} indique un identifiant absent de l'extraction de l'Annuaire Santé").into(),
            AnnuaireNamesAnother {
                source,
                given_name,
                family_name,
            } => format!("{source} indique un identifiant que l'Annuaire Santé attribue à {given_name} {family_name}").into(),
            SeveralProfessionalsWithThisName => "plusieurs professionnels de l'établissement portent ce nom".into(),
            SeveralLocalPeopleWithThisName => "plusieurs comptes locaux portent ce nom".into(),
            NameMatchIdentifierTaken => "cet identifiant national est déjà rattaché à une autre personne".into(),
            // Queued before reasons were typed: kept as written.
            Text(t) => t.clone().into(),
        }
    }
}

const CODE_REJECTED_FR: &str = "Le code d'enrôlement est erroné, expiré ou déjà utilisé.";
const MODEL_NOT_ALLOWED_FR: &str = "Ce modèle de clé de sécurité n'est pas autorisé par la politique de l'établissement (son attestation n'est pas reconnue) : utilisez une clé fournie par votre établissement.";
const REGISTRATION_FAILED_FR: &str = "L'enregistrement de la clé de sécurité a échoué : réessayez.";
const ALREADY_REGISTERED_FR: &str = "Cette clé de sécurité est déjà enregistrée.";

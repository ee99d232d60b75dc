//! Mails to customers in their language (issue 14), through `supportd ingest`: the ticket's
//! detected language picks `templates/<lang>/` for the acknowledgement (its Help Center
//! suggestions included), the closing notice and the refusals; a language without templates
//! gets English; an admin's `[templates] dir` adds a language.

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

const MX: &str = "mx.vendor.example";

fn desk(extra: &str) -> Env {
    Env::with_config(&format!(
        "[policy]\nauthserv_id = \"{MX}\"\n\n[[agent]]\nemail = \"alice@vendor.example\"\nname = \"Alice\"\n\n{extra}"
    ))
}

fn mail_text(env: &Env, kind: &str, nth: usize) -> String {
    let row = env
        .outbox()
        .into_iter()
        .filter(|o| o["kind"] == kind)
        .nth(nth)
        .unwrap_or_else(|| panic!("no {kind} #{nth}"));
    env.outbox_raw(row["id"].as_i64().unwrap())
}

const FRENCH: &str = "From: Claire Dubois <cdubois@clinique.example>\nTo: support@vendor.example\n\
    Subject: Réactivation d'un compte\nMessage-ID: <fr-kb@clinique.example>\n\
    Content-Type: text/plain; charset=utf-8\n\n\
    Bonjour, le compte de notre infirmière a été désactivé par erreur pendant son congé. \
    Pouvez-vous réactiver son compte désactivé ? Ce n'est pas urgent. Merci beaucoup.\n";

#[test]
fn a_french_ticket_gets_its_ack_and_close_mail_in_french() {
    let env = desk("");
    // The shipped articles, in the default kb/ of the working directory.
    let kb = env.dir.path().join("kb");
    std::fs::create_dir_all(&kb).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("kb");
    for e in std::fs::read_dir(&shipped).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            std::fs::copy(&p, kb.join(p.file_name().unwrap())).unwrap();
        }
    }
    env.ok(&["kb", "reindex"]);

    let n = created(&env.ingest(&crlf(FRENCH)));
    assert_eq!(env.ticket(n)["language"], "fr");
    let ack = text_body(mail_text(&env, "ack", 0).as_bytes());
    for line in [
        "Bonjour Claire Dubois,",
        "Merci d'avoir contacté Vendor Support.",
        "Numéro de ticket :",
        "Si la prise en charge d'un patient est touchée en ce moment, appelez le +1 555 0142.",
        "Ces articles de notre centre d'aide répondent peut-être déjà à votre question :",
        "https://help.vendor.example/help/reactivate-user",
    ] {
        assert!(ack.contains(line), "{line:?} not in:\n{ack}");
    }
    assert!(!ack.contains("Thank you"), "{ack}");

    let key = env.agent_key(n);
    let reply = env.ingest(&crlf(&format!(
        "Authentication-Results: {MX}; dmarc=pass header.from=vendor.example\n\
         From: Alice <alice@vendor.example>\nTo: support+a-{key}@vendor.example\n\
         Subject: Re: [#{n}] Réactivation\nMessage-ID: <a-fr@vendor.example>\n\n\
         #close\n"
    )));
    assert_eq!(reply["action"], "agent_reply", "{reply}");
    let closed = text_body(mail_text(&env, "closed", 0).as_bytes());
    assert!(closed.contains("a été clos par Alice"), "{closed}");
    assert!(
        closed.contains("les 30 jours : le ticket sera rouvert."),
        "{closed}"
    );
}

#[test]
fn refusals_follow_the_mail_s_language() {
    let env = Env::with_config(&format!(
        "[policy]\nintake = \"known\"\nauthserv_id = \"{MX}\"\n"
    ));
    let out = env.ingest(&crlf(
        "From: Lucía Gómez <lgomez@clinica.example>\nTo: support@vendor.example\n\
         Subject: Cambio de correo\nMessage-ID: <es-refused@clinica.example>\n\
         Content-Type: text/plain; charset=utf-8\n\n\
         Hola, por favor actualicen mi correo electrónico en la aplicación cuando puedan. \
         No es urgente. Muchas gracias y saludos cordiales.\n",
    ));
    assert_eq!(out["action"], "rejected", "{out}");
    let raw = mail_text(&env, "rejected", 0);
    let body = text_body(raw.as_bytes());
    assert!(body.starts_with("Hola, Lucía Gómez:"), "{body}");
    assert!(
        body.contains("solo aceptamos solicitudes de soporte"),
        "{body}"
    );
    assert!(body.contains("de usuarios registrados."), "{body}");
    assert_eq!(header(&raw, "Subject").unwrap(), "Re: Cambio de correo");

    // English mail: the English refusal.
    let out = env.ingest(&crlf(
        "From: Jo Weber <jweber@praxis.example>\nTo: support@vendor.example\n\
         Subject: New account\nMessage-ID: <en-refused@praxis.example>\n\n\
         Hello, please create an account for our new doctor. It is not urgent, thank you.\n",
    ));
    assert_eq!(out["action"], "rejected", "{out}");
    let body = text_body(mail_text(&env, "rejected", 1).as_bytes());
    assert!(body.starts_with("Hello Jo Weber,"), "{body}");
}

#[test]
fn an_admin_adds_a_language_in_the_templates_dir() {
    let templates = tempfile::tempdir().unwrap();
    std::fs::create_dir(templates.path().join("de")).unwrap();
    std::fs::write(
        templates.path().join("de/ack.txt"),
        "Guten Tag {{ requester_name }},\nIhr Ticket {{ tag }} ist eröffnet: {{ link }}\n",
    )
    .unwrap();
    // German detected too (the shipped rules detect en, fr, es).
    let rules = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/triage.toml"),
    )
    .unwrap()
    .replace(
        "detect = [\"en\", \"fr\", \"es\"]",
        "detect = [\"en\", \"fr\", \"es\", \"de\"]",
    );
    assert!(rules.contains("\"de\"]"));
    let rules_file = templates.path().join("triage.toml");
    std::fs::write(&rules_file, rules).unwrap();
    // A copy of the rules reads its learned weights from beside it.
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/triage-weights.toml"),
        templates.path().join("triage-weights.toml"),
    )
    .unwrap();
    let env = desk(&format!(
        "[templates]\ndir = \"{}\"\n\n[triage]\nrules_file = \"{}\"\n",
        templates.path().display(),
        rules_file.display()
    ));
    let n = created(&env.ingest(&crlf(
        "From: Jonas Weber <jweber@praxis.example>\nTo: support@vendor.example\n\
         Subject: Neues Benutzerkonto\nMessage-ID: <de-ack@praxis.example>\n\
         Content-Type: text/plain; charset=utf-8\n\n\
         Guten Tag, bitte legen Sie für unsere neue Ärztin ein Benutzerkonto an. Es ist nicht \
         dringend. Vielen Dank und freundliche Grüße.\n",
    )));
    assert_eq!(env.ticket(n)["language"], "de");
    let ack = text_body(mail_text(&env, "ack", 0).as_bytes());
    assert!(ack.starts_with("Guten Tag Jonas Weber,"), "{ack}");
    assert!(ack.contains(&format!("[#{n}]")), "{ack}");
    // Spanish still has the shipped templates; a language with none gets English.
    let n = created(&env.ingest(&crlf(
        "From: Piet de Vries <pdevries@kliniek.example>\nTo: support@vendor.example\n\
         Subject: Nieuwe gebruiker\nMessage-ID: <nl-ack@kliniek.example>\n\
         Content-Type: text/plain; charset=utf-8\n\n\
         Goedemorgen, kunt u een nieuw account aanmaken voor onze nieuwe arts? Het is niet \
         dringend. Hartelijk dank en met vriendelijke groet.\n",
    )));
    let lang = env.ticket(n)["language"].as_str().unwrap().to_string();
    let ack = text_body(mail_text(&env, "ack", 1).as_bytes());
    if lang != "de" {
        assert!(ack.starts_with("Hello Piet de Vries,"), "{lang}: {ack}");
    }
}

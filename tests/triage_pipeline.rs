//! Triage in the pipeline (issue 12), through the built binary: the customer's language is
//! recorded on the ticket and the acknowledgement of a level 3–4 ticket tells them, in it,
//! whom to call if patient care is affected; the sender's own signals count; an agent's
//! `#urgency` / `#category` is stored as a correction that `supportd triage report` reads.

// Test code: helpers panic on a failed expectation just like the tests do.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

const MX: &str = "mx.vendor.example";

fn desk() -> Env {
    Env::with_config(&format!(
        "[policy]\nauthserv_id = \"{MX}\"\n\n[[agent]]\nemail = \"alice@vendor.example\"\nname = \"Alice\"\n"
    ))
}

#[test]
fn the_language_is_recorded_and_a_routine_ack_says_whom_to_call_in_it() {
    let env = desk();
    let fr = env.ingest(&crlf(
        "From: Claire Dubois <cdubois@clinique.example>\nTo: support@vendor.example\n\
         Subject: Changement d'adresse courriel\nMessage-ID: <fr1@clinique.example>\n\
         Content-Type: text/plain; charset=utf-8\n\n\
         Bonjour, pourriez-vous mettre à jour mon adresse courriel dans l'application ? \
         Ma nouvelle adresse est claire.dubois@clinique.example. Ce n'est pas urgent, merci \
         beaucoup et bonne journée.\n",
    ));
    let n = created(&fr);
    let t = env.ticket(n);
    assert_eq!(t["language"], "fr", "{t}");
    assert!(t["urgency"].as_i64().unwrap() >= 3, "{t}");
    let ack = env.ack_text(n);
    assert!(
        ack.contains(
            "Si la prise en charge d'un patient est touchée en ce moment, appelez le +1 555 0142."
        ),
        "{ack}"
    );
    assert!(!ack.contains("call support now"), "{ack}");

    let es = env.ingest(&crlf(
        "From: Lucía Gómez <lgomez@clinica.example>\nTo: support@vendor.example\n\
         Subject: Cambio de correo\nMessage-ID: <es1@clinica.example>\n\
         Content-Type: text/plain; charset=utf-8\n\n\
         Hola, por favor actualicen mi correo electrónico en la aplicación cuando puedan. \
         No es urgente. Muchas gracias y saludos cordiales.\n",
    ));
    let n = created(&es);
    assert_eq!(env.ticket(n)["language"], "es");
    assert!(env.ack_text(n).contains("llame al +1 555 0142"));
}

#[test]
fn an_agents_correction_is_stored_and_reported() {
    let env = desk();
    let out = env.ingest(&crlf(
        "From: Ann Lee <ann@clinic.example>\nTo: support@vendor.example\n\
         Subject: Question about our invoice\nMessage-ID: <c1@clinic.example>\n\n\
         Hello, our last invoice looks higher than usual, could you check it?\n",
    ));
    let n = created(&out);
    let before = String::from_utf8_lossy(&env.run(&["triage", "report"]).stdout).to_string();
    assert!(before.contains("no corrections yet"), "{before}");
    let key = env.agent_key(n);
    let reply = env.ingest(&crlf(&format!(
        "Authentication-Results: {MX}; dmarc=pass header.from=vendor.example\n\
         From: Alice <alice@vendor.example>\nTo: support+a-{key}@vendor.example\n\
         Subject: Re: [#{n}] Question about our invoice\nMessage-ID: <a1@vendor.example>\n\n\
         #urgency 1\n#category routing\n#note\nReally an outage, see the call.\n"
    )));
    assert_eq!(reply["action"], "agent_reply", "{reply}");
    let report = String::from_utf8_lossy(&env.run(&["triage", "report"]).stdout).to_string();
    assert!(!report.contains("no corrections yet"), "{report}");
    assert!(report.contains("routing"), "{report}");
}

/// Pipe mode keeps the built rules beside the SQLite database for the next process
/// (`supportd-triage.cache`); the tickets are triaged the same with it, without it
/// (`[triage] cache_dir = ""`), and with a damaged one, which is replaced. The learned
/// weights are in the same file, built into the rules.
#[test]
fn piped_messages_share_the_built_rules_and_a_damaged_cache_changes_nothing() {
    let mail = |i: usize| {
        crlf(&format!(
            "From: Nurse {i} <n{i}@clinic.example>\nTo: support@vendor.example\n\
             Subject: Nobody can log in\nMessage-ID: <cache-{i}@clinic.example>\n\n\
             Nobody on 4 West can log in since 07:00 and we cannot reach the on-call surgeon.\n"
        ))
    };
    let triage = |env: &Env, outcome: &serde_json::Value| {
        let t = env.ticket(created(outcome));
        (t["category"].clone(), t["urgency"].clone())
    };

    // The default cache directory is the SQLite database's: SQLite whatever the suite's backend.
    let cached = Env::on(
        Backend::Sqlite,
        &format!("[policy]\nauthserv_id = \"{MX}\"\n"),
    );
    let cache = cached.dir.path().join("supportd-triage.cache");
    let first = triage(&cached, &cached.ingest_stdin(&mail(1)));
    let written = std::fs::read(&cache).expect("the first process writes the cache");
    assert!(written.len() > 10_000, "{} bytes", written.len());
    assert!(
        !cached.dir.path().join("supportd-weights.cache").exists(),
        "the weights are built into the one cached file"
    );
    let second = triage(&cached, &cached.ingest_stdin(&mail(2)));
    assert_eq!(
        std::fs::read(&cache).unwrap(),
        written,
        "read, not rewritten"
    );

    std::fs::write(&cache, b"\x00not a cache").unwrap();
    let third = triage(&cached, &cached.ingest_stdin(&mail(3)));
    assert_eq!(
        std::fs::read(&cache).unwrap(),
        written,
        "replaced by the built rules"
    );

    let uncached = Env::on(
        Backend::Sqlite,
        &format!("[policy]\nauthserv_id = \"{MX}\"\n\n[triage]\ncache_dir = \"\"\n"),
    );
    let plain = triage(&uncached, &uncached.ingest_stdin(&mail(4)));
    assert!(!uncached.dir.path().join("supportd-triage.cache").exists());

    assert_eq!(first, plain);
    assert_eq!(second, plain);
    assert_eq!(third, plain);
    assert!(plain.1.as_i64().is_some_and(|u| u <= 2), "{plain:?}");
}

/// The cached rules carry the learned weights they were built with: when an admin installs
/// other weights (same rules file, another `triage-weights.toml`), the next piped process
/// scores with the new ones and replaces the cache; it never keeps the old weights.
#[test]
fn new_weights_beside_the_same_rules_are_used_by_the_next_piped_process() {
    let root = env!("CARGO_MANIFEST_DIR");
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("triage.toml");
    let weights = dir.path().join("triage-weights.toml");
    std::fs::copy(format!("{root}/config/triage.toml"), &rules).unwrap();
    let shipped = std::fs::read_to_string(format!("{root}/config/triage-weights.toml")).unwrap();
    std::fs::write(&weights, &shipped).unwrap();
    let env = Env::on(
        Backend::Sqlite,
        &format!(
            "[policy]\nauthserv_id = \"{MX}\"\n\n[triage]\nrules_file = \"{}\"\n",
            rules.display()
        ),
    );
    let mail = |i: usize| {
        crlf(&format!(
            "From: Nurse {i} <n{i}@clinic.example>\nTo: support@vendor.example\n\
             Subject: Nobody can log in\nMessage-ID: <weights-{i}@clinic.example>\n\n\
             Nobody on 4 West can log in since 07:00 and we cannot reach the on-call surgeon.\n"
        ))
    };
    let urgency = |i: usize| {
        let t = env.ticket(created(&env.ingest_stdin(&mail(i))));
        t["urgency"].as_i64().unwrap()
    };
    let cache = env.dir.path().join("supportd-triage.cache");
    assert!(urgency(1) <= 2);
    let written = std::fs::read(&cache).expect("the first process writes the cache");
    assert!(urgency(2) <= 2);

    // Other weights: the impact decision's bias far below zero, so nothing is level 1-2.
    let at = shipped.find("[impact]\nbias = ").unwrap() + "[impact]\n".len();
    let end = at + shipped[at..].find('\n').unwrap();
    std::fs::write(
        &weights,
        format!("{}bias = -50.0{}", &shipped[..at], &shipped[end..]),
    )
    .unwrap();
    assert!(urgency(3) >= 3, "the new weights are used");
    assert_ne!(
        std::fs::read(&cache).unwrap(),
        written,
        "and the cache replaced"
    );
    assert!(
        urgency(4) >= 3,
        "also by the process that reads the new cache"
    );
}

/// A piped `ingest` compiles and checks every template only while they are new to it (the
/// check is recorded beside the rules cache); a process after that compiles only what it
/// renders. An admin's changed template is new again: a broken one still fails the next
/// process at start-up, naming the file, before any mail is taken, and a fixed one is used.
#[test]
fn a_changed_template_is_checked_again_by_the_next_piped_process() {
    let tpl = tempfile::tempdir().unwrap();
    let ack = tpl.path().join("ack.txt");
    let root = env!("CARGO_MANIFEST_DIR");
    let shipped = std::fs::read_to_string(format!("{root}/templates/en/ack.txt")).unwrap();
    let with_line = |line: &str| format!("{line}\n{shipped}");
    std::fs::write(&ack, with_line("Template version one.")).unwrap();
    let env = Env::on(
        Backend::Sqlite,
        &format!(
            "[policy]\nauthserv_id = \"{MX}\"\n\n[templates]\ndir = \"{}\"\n",
            tpl.path().display()
        ),
    );
    let mail = |i: usize| {
        crlf(&format!(
            "From: Clerk {i} <c{i}@clinic.example>\nTo: support@vendor.example\n\
             Subject: Question {i}\nMessage-ID: <template-{i}@clinic.example>\n\n\
             How do I change the font size in the app?\n"
        ))
    };
    let checked = env.dir.path().join("supportd-templates.checked");
    let record = || std::fs::read(&checked).expect("a recorded check");
    let first = created(&env.ingest_stdin(&mail(1)));
    assert!(env.ack_text(first).contains("Template version one."));
    let mark = record();
    // The next process takes the recorded check and renders through the lazy templates.
    let second = created(&env.ingest_stdin(&mail(2)));
    assert!(env.ack_text(second).contains("Template version one."));
    assert_eq!(record(), mark, "nothing to check again");

    // Broken: an unknown variable. The next process fails before taking the mail.
    std::fs::write(&ack, with_line("Hello {{ no_such_variable }}.")).unwrap();
    let out = env.ingest_stdin_output(&mail(3));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a broken template fails: {stderr}");
    assert!(stderr.contains("ack.txt"), "and is named: {stderr}");
    assert_eq!(env.tickets().len(), 2, "no mail was taken");

    // Fixed: checked again, and the new text is used.
    std::fs::write(&ack, with_line("Template version two.")).unwrap();
    let fourth = created(&env.ingest_stdin(&mail(4)));
    assert!(env.ack_text(fourth).contains("Template version two."));
    assert_ne!(record(), mark, "the new check recorded");
}

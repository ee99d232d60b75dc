//! Reading rules files, and the engine end to end on small rule sets and the shipped one.

use super::tune::{self, Sample, TuneError, TuneOptions};
use super::weights::{Linear, Weights};
use super::*;

const BASE: &str = r#"
[scoring]
default_category = "general"
category_threshold = 2
subject_multiplier = 2

[urgency]
impact_bias = -2
stopped_bias = -1
prompt_bias = -1
margin = 1

[[level]]
level = 1
name = "Critical"
first_response_hours = 1
resolution_hours = 24
advise_phone = true

[[level]]
level = 2
name = "High"
first_response_hours = 2
resolution_hours = 72
advise_phone = true

[[level]]
level = 3
name = "Medium"
first_response_hours = 4
resolution_hours = 120

[[level]]
level = 4
name = "Low"
first_response_hours = 48
resolution_hours = 240

[[category]]
id = "billing"
name = "Billing"

[[category]]
id = "schedule"
name = "Schedule"

[[category]]
id = "general"
name = "General"
"#;

fn rules(extra: &str) -> Result<Rules, TriageError> {
    Rules::from_toml(&format!("{BASE}{extra}"), "test.toml")
}

fn shipped() -> Result<Rules, TriageError> {
    Rules::from_toml(
        include_str!("../../config/triage.toml"),
        "config/triage.toml",
    )
}

fn fail(text: &str) -> String {
    match Rules::from_toml(text, "t.toml") {
        Ok(_) => panic!("should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_when_nothing_matches() -> Result<(), TriageError> {
    let r = rules("")?;
    let c = r.classify("hello", "just saying hi");
    assert_eq!((c.category.as_str(), c.urgency), ("general", 4));
    assert!(c.reasons.is_empty() && !c.margin);
    assert_eq!(r.default_urgency(), 4);
    assert_eq!(r.levels().len(), 4);
    assert_eq!(r.level(1).map(|l| l.first_response_hours), Some(1));
    assert_eq!(
        r.category("billing").map(|c| c.name.as_str()),
        Some("Billing")
    );
    Ok(())
}

#[test]
fn category_weights_add_up_and_subject_counts_more() -> Result<(), TriageError> {
    let r = rules(
        r#"
[[rule]]
id = "invoice"
category = "billing"
patterns = ["invoice*"]
weight = 1.5

[[rule]]
id = "shift"
category = "schedule"
patterns = ["(shift|shifts)"]
weight = 2
subject_weight = 2
"#,
    )?;
    assert_eq!(
        r.classify("question", "the invoice for the shift").category,
        "schedule"
    );
    // Subject: 1.5 x 2 = 3, plus the body's 1.5.
    let c = r.classify("Invoices", "the invoice for the shift");
    assert_eq!(c.category, "billing");
    assert_eq!(c.rules, vec!["invoice".to_string(), "shift".to_string()]);
    assert_eq!(r.classify("hi", "an invoice").category, "general");
    Ok(())
}

#[test]
fn category_tie_goes_to_first_listed_and_each_pattern_counts() -> Result<(), TriageError> {
    let r = rules(
        r#"
[[rule]]
id = "s"
category = "schedule"
patterns = ["swap", "rota", "shift"]
weight = 1
each_pattern = true

[[rule]]
id = "b"
category = "billing"
patterns = ["invoice", "payment"]
weight = 2
"#,
    )?;
    assert_eq!(r.classify("", "swap rota invoice").category, "billing");
    assert_eq!(
        r.classify("", "swap rota shift invoice").category,
        "schedule"
    );
    Ok(())
}

#[test]
fn except_cancels_an_overlapping_match_unless_vetoes_the_text() -> Result<(), TriageError> {
    let r = rules(
        r#"
[[feature]]
id = "everyone"
patterns = ["everyone"]
except = ["everyone else"]
impact = 3

[[feature]]
id = "broken"
patterns = ["broken"]
unless = ["broken down by"]
impact = 3
"#,
    )?;
    assert_eq!(
        r.classify("", "Everyone is stuck").features,
        vec!["everyone"]
    );
    assert!(r.classify("", "everyone else is fine").features.is_empty());
    assert_eq!(
        r.classify("", "everyone else is fine, but everyone on 4 West is stuck")
            .features,
        vec!["everyone"]
    );
    assert_eq!(r.classify("", "it is broken").features, vec!["broken"]);
    assert!(r
        .classify("", "it is broken. Data broken down by unit")
        .features
        .is_empty());
    Ok(())
}

const DECISIONS: &str = r#"
[[feature]]
id = "scope.nobody"
patterns = ["(nobody|no one|personne ne|nadie)"]
impact = 1

[[feature]]
id = "broken"
patterns = ["(can't|cannot|can|peut|puede) .. (log in|sign in|connecter|entrar)"]
impact = 0.5
prompt = 2

[[feature]]
id = "many-blocked"
all_of = ["scope.nobody", "broken"]
impact = 2
stopped = 2

[[feature]]
id = "slow"
patterns = ["slow", "delay*"]
impact = 1.5
stopped = -1

[[feature]]
id = "calm"
patterns = ["not urgent", "no (patient)? impact"]
impact = -2
prompt = -3

[[feature]]
id = "importance"
signal = "importance_high"
prompt = 1.5

[[feature]]
id = "billing-topic"
categories = ["billing"]
impact = -5

[[rule]]
id = "bill"
category = "billing"
patterns = ["invoice"]
weight = 3
"#;

#[test]
fn scope_times_breakage_gives_level_1() -> Result<(), TriageError> {
    let r = rules(DECISIONS)?;
    let c = r.classify("", "Nobody on the unit can log in");
    assert_eq!(c.urgency, 1, "{c:?}");
    assert_eq!(c.features, vec!["scope.nobody", "broken", "many-blocked"]);
    // The same words in French and Spanish, accents and case folded.
    assert_eq!(r.classify("", "PERSONNE NE peut se connecter").urgency, 1);
    assert_eq!(
        r.classify("", "Nadie puede entrar en la aplicación")
            .urgency,
        1
    );
    // One user blocked: level 3.
    assert_eq!(r.classify("", "She can't log in").urgency, 3);
    Ok(())
}

#[test]
fn negation_lowers_the_level() -> Result<(), TriageError> {
    let r = rules(DECISIONS)?;
    assert_eq!(r.classify("", "I can't sign in").urgency, 3);
    assert_eq!(r.classify("", "I can't sign in, not urgent").urgency, 4);
    let c = r.classify("", "Nobody can log in to the test site, no impact");
    assert_eq!(
        c.urgency, 2,
        "impact 3.5 - 2 - 2 = -0.5 is within the margin: {c:?}"
    );
    Ok(())
}

#[test]
fn margin_prefers_level_2_and_says_so() -> Result<(), TriageError> {
    let r = rules(DECISIONS)?;
    // impact -2 + 1.5 = -0.5: within the margin of 1 below the boundary.
    let c = r.classify("", "messages are slow");
    assert_eq!(c.urgency, 2);
    assert!(c.margin);
    let said = c.reasons.last().cloned().unwrap_or_default();
    assert!(
        said.contains("safety margin") && said.contains("level 2"),
        "{said}"
    );
    // Without the margin the same score is level 3-4.
    let r = rules(&DECISIONS.replace("impact = 1.5", "impact = 0.5"))?;
    let c = r.classify("", "messages are slow");
    assert!(c.urgency >= 3 && !c.margin, "{c:?}");
    Ok(())
}

#[test]
fn signals_and_categories_fire_features() -> Result<(), TriageError> {
    let r = rules(DECISIONS)?;
    assert_eq!(r.classify("", "please reset it").urgency, 4);
    let urgent = TriageInput {
        subject: "",
        body: "please reset it",
        signals: Signals {
            importance_high: true,
            x_priority: None,
        },
    };
    let c = r.classify_mail(&urgent);
    assert_eq!(
        (c.urgency, c.features.clone()),
        (3, vec!["importance".to_string()])
    );
    let c = r.classify("", "the invoice: nobody can log in");
    assert_eq!((c.category.as_str(), c.urgency), ("billing", 3), "{c:?}");
    Ok(())
}

#[test]
fn explain_lists_each_contribution_and_the_words() -> Result<(), TriageError> {
    let r = rules(DECISIONS)?;
    let e = r.explain(&TriageInput {
        subject: "",
        body: "Nobody can log in since 7",
        signals: Signals::default(),
    });
    let text = e.to_string();
    assert!(text.contains("impact = +1.50"), "{text}");
    assert!(text.contains("+2.00  many-blocked"), "{text}");
    assert!(text.contains("+1.00  scope.nobody \"nobody\""), "{text}");
    assert!(text.contains("broken \"can log in\""), "{text}");
    Ok(())
}

#[test]
fn learned_weights_replace_the_files() -> Result<(), TriageError> {
    let r = rules(DECISIONS)?;
    let mut w = Weights::from_toml(
        "ngram_buckets = 16\n[impact]\nbias = -2\n[impact.features]\nslow = 1.5\n[stopped]\nbias = 0\n[prompt]\nbias = 1\n",
        "w",
    )
    .map_err(|e| TriageError::whole(e, "weights"))?;
    let learned = rules(DECISIONS)?
        .with_weights(w.clone())
        .map_err(|e| TriageError::whole(e, "weights"))?;
    assert_eq!(r.classify("", "messages are slow").urgency, 2);
    assert_eq!(learned.classify("", "messages are slow").urgency, 2);
    assert_eq!(learned.classify("", "hello").urgency, 3);
    assert!(
        learned
            .explain(&TriageInput {
                subject: "",
                body: "slow",
                signals: Signals::default()
            })
            .learned
    );
    w.category.insert("nope".into(), Default::default());
    assert!(rules(DECISIONS)?
        .with_weights(w)
        .is_err_and(|e| e.contains("`nope`")));
    Ok(())
}

#[test]
fn every_problem_is_reported_with_lines() {
    let text = format!(
        "{BASE}{}",
        r#"
[[rule]]
id = "bad-pattern"
category = "billing"
patterns = ['(unclosed']

[[rule]]
id = "bad-cat"
category = "nope"
patterns = ['x']

[[rule]]
id = "bad-cat"
category = "billing"
urgency = 1
patterns = ['x']
colour = "red"

[[feature]]
id = "f"
all_of = ["later"]
signal = "moon"

[[feature]]
id = "later"
patterns = ["x"]

[[category]]
id = "billing"
name = "Again"
"#
    );
    let err = match Rules::from_toml(&text, "conf/triage.toml") {
        Ok(_) => panic!("should fail"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(msg.contains("conf/triage.toml:"), "{msg}");
    assert!(
        msg.contains(
            "rule `bad-pattern`: bad pattern in `patterns`: \"(unclosed\": unbalanced parentheses"
        ),
        "{msg}"
    );
    assert!(msg.contains("unknown category `nope`"), "{msg}");
    assert!(msg.contains("duplicate rule id `bad-cat`"), "{msg}");
    assert!(msg.contains("`urgency` on a [[rule]] is gone"), "{msg}");
    assert!(msg.contains("unknown key `colour`"), "{msg}");
    assert!(
        msg.contains("`later` is not a feature defined above this one"),
        "{msg}"
    );
    assert!(msg.contains("unknown signal `moon`"), "{msg}");
    assert!(msg.contains("duplicate category id `billing`"), "{msg}");
    assert!(err.problems().iter().all(|p| p.line.is_some()), "{msg}");
    let line_of_pattern = text
        .lines()
        .position(|l| l.contains("(unclosed"))
        .map(|i| i + 1);
    assert!(err
        .problems()
        .iter()
        .any(|p| p.line == line_of_pattern && p.message.contains("bad pattern")));
}

#[test]
fn syntax_errors_missing_and_old_keys() {
    assert!(fail("[scoring]\ndefault_category = = 4\n").contains("t.toml:2:"));
    let msg = fail(&format!(
        "{BASE}\n[extra]\na = 1\n\n[[rule]]\ncategory = \"billing\"\n"
    ));
    assert!(msg.contains("unknown key `extra`"), "{msg}");
    assert!(msg.contains("missing required key `id`"), "{msg}");
    assert!(msg.contains("missing required key `patterns`"), "{msg}");
    let msg = fail(&BASE.replace("[scoring]", "[scoring]\ndefault_urgency = 4"));
    assert!(msg.contains("`default_urgency` is gone"), "{msg}");
    let msg = fail(&BASE.replace("level = 3\n", "level = 7\n"));
    assert!(
        msg.contains("level 7 out of range") && msg.contains("no [[level]] 3"),
        "{msg}"
    );
    let msg = fail(&BASE.replace(
        "default_category = \"general\"",
        "default_category = \"misc\"",
    ));
    assert!(msg.contains("default_category `misc`"), "{msg}");
    let msg = fail(&format!("{BASE}[language]\ndetect = [\"en\", \"xx\"]\n"));
    assert!(msg.contains("[language]: unknown language `xx`"), "{msg}");
    // An empty [[rule]] is reported at its own header line, not at line 1.
    let text = format!("{BASE}\n[[rule]]\n");
    let header = text.lines().count();
    let msg = fail(&text);
    assert!(
        msg.contains(&format!(
            "t.toml:{header}: [[rule]] (no id): missing required key `id`"
        )),
        "{msg}"
    );
}

#[test]
fn shipped_rules_load_and_read_three_languages() -> Result<(), TriageError> {
    let r = shipped()?;
    assert_eq!(r.levels().len(), 4);
    for id in [
        "billing",
        "routing",
        "care-team-user",
        "practitioner-user",
        "user-access",
        "user-info",
        "schedule",
        "after-hours",
        "reporting",
        "legal",
        "general",
    ] {
        assert!(r.category(id).is_some(), "missing category {id}");
    }
    let cases = [
        (
            "",
            "None of the nurses on 3 units can log in since 7 pm. We are using the overhead.",
            1,
            "en",
        ),
        (
            "",
            "Aucune infirmière de l'unité ne peut se connecter depuis 7 h ce matin.",
            1,
            "fr",
        ),
        (
            "",
            "Ninguna de las enfermeras puede entrar a la aplicación desde las 7 de la mañana.",
            1,
            "es",
        ),
        (
            "Name change",
            "Please update my last name in the directory when you get a chance.",
            4,
            "en",
        ),
        (
            "",
            "Pourriez-vous corriger le nom du Dr Tremblay dans l'annuaire? Rien ne presse.",
            4,
            "fr",
        ),
        (
            "",
            "One of our nurses can't log in, everyone else on the unit is fine. She works tonight.",
            3,
            "en",
        ),
    ];
    for (subject, body, level, lang) in cases {
        let c = r.classify(subject, body);
        assert_eq!(
            (c.urgency, c.language.as_str()),
            (level, lang),
            "{body}: {c:?}"
        );
    }
    Ok(())
}

fn sample(features: &[&str], ngrams: &[u32], rules: (&str, u8), fin: (&str, u8)) -> Sample {
    Sample {
        evidence: Evidence {
            rules: vec![],
            features: features.iter().map(|s| s.to_string()).collect(),
            ngrams: ngrams.to_vec(),
            ..Evidence::default()
        },
        rules_category: rules.0.into(),
        rules_urgency: rules.1,
        final_category: fin.0.into(),
        final_urgency: fin.1,
    }
}

#[test]
fn report_counts_recall_and_false_alarms() {
    let samples = vec![
        sample(&[], &[], ("billing", 4), ("billing", 4)),
        sample(&[], &[], ("general", 3), ("general", 1)),
        sample(&[], &[], ("general", 2), ("general", 1)),
        sample(&[], &[], ("schedule", 1), ("billing", 4)),
    ];
    let cats = vec!["billing".to_string(), "schedule".into(), "general".into()];
    let r = tune::report(&samples, &cats);
    assert_eq!((r.figures.high, r.figures.high_found), (2, 1));
    assert_eq!((r.figures.low, r.figures.low_raised), (2, 1));
    assert_eq!(r.figures.category_ok, 3);
    assert_eq!(
        r.urgency.counts[0],
        vec![0, 1, 1, 0],
        "level 1 row: one at 2, one at 3"
    );
    assert_eq!(
        r.category.counts[0],
        vec![1, 1, 0],
        "billing row: one right, one as schedule"
    );
    let text = r.to_string();
    assert!(
        text.contains("level 1-2: recall 50.0 % (1 of 2 urgent tickets missed)"),
        "{text}"
    );
    assert!(text.contains("false alarms 50.0 % (1 of 2"), "{text}");
}

#[test]
fn tune_needs_fifty_and_learns_from_corrections() -> Result<(), TriageError> {
    let r = rules(DECISIONS)?;
    let few: Vec<Sample> = (0..49)
        .map(|_| sample(&[], &[], ("general", 4), ("general", 4)))
        .collect();
    assert_eq!(
        tune::tune(&r, &few, TuneOptions::default()).err(),
        Some(TuneError::TooFew(49))
    );
    // The agents keep raising mails whose n-gram 77 ("pages stuck", say) fired to level 1;
    // the rules saw nothing in them.
    let mut samples = Vec::new();
    for i in 0..120u32 {
        if i % 3 == 0 {
            samples.push(sample(&[], &[77, i], ("general", 4), ("general", 1)));
        } else {
            samples.push(sample(&[], &[1000 + i], ("general", 4), ("general", 4)));
        }
    }
    let opt = TuneOptions {
        buckets: 4096,
        ..TuneOptions::default()
    };
    let out =
        tune::tune(&r, &samples, opt).map_err(|e| TriageError::whole(e.to_string(), "tune"))?;
    assert_eq!((out.trained, out.held_back), (96, 24));
    assert_eq!(out.before.high_found, 0);
    assert_eq!(out.after.high_found, out.after.high, "{}", out.after);
    assert_eq!(out.after.low_raised, 0, "{}", out.after);
    assert!(out.weights.impact.ngrams.get(77).is_some_and(|w| w > 0.5));
    Ok(())
}

#[test]
fn tune_learns_categories_from_words_beside_the_rules_totals() -> Result<(), TriageError> {
    let r = rules(DECISIONS)?;
    // Agents file as billing the mails whose n-gram 55 ("invoice", say) fired, where no
    // rule saw a topic; the schedule rule's total still decides its own mails.
    let mut samples = Vec::new();
    for i in 0..150u32 {
        let mut s = match i % 3 {
            0 => sample(&[], &[55, 2000 + i], ("general", 4), ("billing", 4)),
            1 => sample(&[], &[3000 + i], ("schedule", 4), ("schedule", 4)),
            _ => sample(&[], &[4000 + i], ("general", 4), ("general", 4)),
        };
        if i % 3 == 1 {
            s.evidence.category_totals.insert("schedule".into(), 6.0);
        }
        samples.push(s);
    }
    let opt = TuneOptions {
        buckets: 8192,
        ..TuneOptions::default()
    };
    let out =
        tune::tune(&r, &samples, opt).map_err(|e| TriageError::whole(e.to_string(), "tune"))?;
    assert_eq!((out.before.category_ok, out.before.n), (20, 30));
    assert_eq!(out.after.category_ok, out.after.n, "{}", out.after);
    let cats: Vec<&str> = out.weights.category.keys().map(String::as_str).collect();
    assert_eq!(cats, ["billing", "general", "schedule"]);
    let billing = &out.weights.category["billing"];
    assert!(
        billing.ngrams.get(55).is_some_and(|w| w > 0.5),
        "{billing:?}"
    );
    let schedule = &out.weights.category["schedule"];
    assert!(schedule.features.get("schedule").is_some_and(|w| *w > 0.0));
    // The weights fit the rules they were learned for.
    let installed = rules(DECISIONS)?.with_weights(out.weights.clone());
    assert!(installed.is_ok(), "{:?}", installed.err());
    // Tuning again under other installed weights (these call every schedule total billing)
    // measures the new weights alone, not a mix with the installed ones.
    let mut other = out.weights.clone();
    for (id, l) in other.category.iter_mut() {
        let w = if id == "billing" { 100.0 } else { -100.0 };
        l.features.insert("schedule".into(), w);
    }
    let under_other = rules(DECISIONS)?
        .with_weights(other)
        .map_err(|e| TriageError::whole("other", e))?;
    let again = tune::tune(&under_other, &samples, opt)
        .map_err(|e| TriageError::whole(e.to_string(), "tune"))?;
    assert_eq!(again.after.category_ok, again.after.n, "{}", again.after);

    assert_eq!(out.unknown_category, 0);

    // Nothing held back: all learn, nothing measured. A category since removed from the
    // rules is counted and left out of the category's fit.
    samples.push(sample(&[], &[9], ("general", 4), ("pharmacy", 4)));
    let all = TuneOptions {
        held_back: 0.0,
        ..opt
    };
    let out =
        tune::tune(&r, &samples, all).map_err(|e| TriageError::whole(e.to_string(), "tune"))?;
    assert_eq!((out.trained, out.held_back, out.after.n), (151, 0, 0));
    assert_eq!(out.unknown_category, 1);
    assert!(!out.weights.category.contains_key("pharmacy"));
    Ok(())
}

#[test]
fn category_weights_must_weigh_totals_of_every_category() -> Result<(), TriageError> {
    let r = rules("")?;
    let mut w = Weights {
        ngram_buckets: 64,
        impact: Linear::default(),
        stopped: Linear::default(),
        prompt: Linear::default(),
        category: Default::default(),
    };
    for c in ["billing", "schedule", "general"] {
        w.category.insert(c.into(), Linear::default());
    }
    let installed = rules("")?.with_weights(w.clone());
    assert!(installed.as_ref().is_ok_and(Rules::consistent));
    // Urgency weights alone: a table of the three urgency decisions.
    let mut urgency_only = w.clone();
    urgency_only.category.clear();
    urgency_only.impact.ngrams.insert(5, 0.5);
    let r3 = rules("")?
        .with_weights(urgency_only)
        .map_err(|e| TriageError::whole("urgency only", e))?;
    assert!(r3.consistent() && r3.ngram_table.fits(3) && !r3.ngram_table.fits(6));
    // An older tune weighed fired rules, not category totals.
    let mut old = w.clone();
    if let Some(l) = old.category.get_mut("billing") {
        l.features.insert("billing.invoice".into(), 1.0);
    }
    let e = rules("")?.with_weights(old).err().unwrap_or_default();
    assert!(
        e.contains("`billing.invoice`, which is not a category"),
        "{e}"
    );
    // A category the weights never learned could never be chosen.
    w.category.remove("general");
    let e = r.with_weights(w).err().unwrap_or_default();
    assert!(e.contains("no [category.general]"), "{e}");
    Ok(())
}

#[test]
fn the_installed_weights_score_as_their_file_does() -> Result<(), String> {
    // Installing weights moves their n-gram weights into one table of every decision; the
    // decisions must be those of the weights as read, scored one decision at a time
    // (`Rules::predict`), on real mail.
    let plain =
        Rules::from_toml(crate::setup::DEFAULT_RULES, "built-in").map_err(|e| e.to_string())?;
    let read = Weights::from_toml(crate::setup::DEFAULT_WEIGHTS, "built-in weights")?;
    let installed = Rules::from_toml(crate::setup::DEFAULT_RULES, "built-in")
        .map_err(|e| e.to_string())?
        .with_weights(read.clone())?;
    let seen = each_dev_mail(|path, input| {
        let (c, e) = installed.classify_with_evidence(input);
        assert_eq!(
            plain.predict(&e, &read),
            (c.category.clone(), c.urgency),
            "{}",
            path.display()
        );
    });
    assert!(seen > 50, "{seen} mails");
    Ok(())
}

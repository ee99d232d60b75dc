//! Unit tests of the collector.

use super::*;
use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct File {
    server: Server,
    item: Vec<Item>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Server {
    port: u16,
    name: String,
    tags: Vec<Even>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            port: 25,
            name: "x".into(),
            tags: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    id: String,
    #[serde(default)]
    weight: u32,
}

/// A domain type with its own message, as config's typed fields have; through a visitor,
/// so that inside an array its error is placed at the element.
#[derive(Debug)]
struct Even(u32);

impl<'de> Deserialize<'de> for Even {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Even, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Even;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an even number")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Even, E> {
                if n % 2 == 0 {
                    Ok(Even(n as u32))
                } else {
                    Err(E::custom(format!("{n} is odd")))
                }
            }
        }
        d.deserialize_u32(V)
    }
}

/// serde's `try_from`: fine for a key's value, but inside an array its error is placed
/// at the whole array (the element's deserializer has returned when it is raised).
#[derive(Debug, Deserialize)]
#[serde(try_from = "u32")]
struct Odd(#[allow(dead_code)] u32);

impl TryFrom<u32> for Odd {
    type Error = String;
    fn try_from(n: u32) -> Result<Odd, String> {
        if n % 2 == 1 {
            Ok(Odd(n))
        } else {
            Err(format!("{n} is even"))
        }
    }
}

#[test]
fn try_from_errors_in_arrays_land_on_the_array() {
    // (`one` is optional, `many` required.)
    #[derive(Debug, Deserialize)]
    struct F {
        #[allow(dead_code)]
        one: Option<Odd>,
        #[allow(dead_code)]
        many: Vec<Odd>,
    }
    let doc = Document::parse(
        "one = 2
many = [
1,
4,
]
",
    )
    .unwrap();
    let (_, got) = doc.deserialize::<F>();
    let got: Vec<_> = got
        .iter()
        .map(|p| (p.line, p.key.as_str(), p.message.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Some(1), "one", "2 is even"),
            // Taken out for its bad element, `many` is then missing: not reported twice.
            (Some(2), "many", "4 is even"),
        ]
    );
}

/// (line, key, message) of a problem.
type Shown = (Option<usize>, String, String);

fn problems(text: &str) -> (Option<File>, Vec<Shown>) {
    let doc = Document::parse(text).unwrap();
    let (file, problems) = doc.deserialize::<File>();
    let shown = problems
        .into_iter()
        .map(|p| (p.line, p.key, p.message))
        .collect();
    (file, shown)
}

#[test]
fn every_problem_with_its_line_and_key() {
    let text = "[server]\nport = \"big\"\nnmae = \"y\"\ntags = [2, 3, 4, 5]\n\n\
                [[item]]\nid = \"a\"\n\n[[item]]\nweight = 1\n\n[[item]]\nid = \"c\"\nweight = -1\n\n\
                [nope]\nx = 1\n";
    let (file, got) = problems(text);
    let keys: Vec<_> = got.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
    assert_eq!(
        keys,
        [
            (Some(2), "server.port"),
            (Some(3), "server.nmae"),
            (Some(4), "server.tags[1]"),
            (Some(4), "server.tags[3]"),
            (Some(9), "item[1]"),
            (Some(14), "item[2].weight"),
            (Some(16), "nope"),
        ],
        "{got:#?}"
    );
    assert!(got[0].2.contains("invalid type: string \"big\""), "{got:?}");
    assert!(got[1].2.starts_with("unknown field `nmae`"), "{got:?}");
    assert_eq!(got[2].2, "3 is odd");
    assert_eq!(got[4].2, "missing field `id`");
    // What was valid is kept, defaults in place of the bad entries.
    let file = file.unwrap();
    assert_eq!(file.server.port, 25);
    assert_eq!(
        file.server.tags.iter().map(|t| t.0).collect::<Vec<_>>(),
        [2, 4]
    );
    assert_eq!(file.item.len(), 2);
    assert_eq!(file.item[1].id, "c");
    assert_eq!(file.item[1].weight, 0);
}

#[test]
fn rendered_as_file_line_key_message() {
    let doc = Document::parse("[server]\nport = 0\n").unwrap();
    let mut c = Collector::new(&doc);
    c.at_key("server.port", "must be above 0");
    c.at_key("server.name", "absent key: placed at its table");
    c.at_key("client.name", "absent table: no line");
    c.whole_file("the whole file");
    let err = c.finish("s.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "s.toml: 4 configuration problems\n  \
         s.toml:1: key `server.name`: absent key: placed at its table\n  \
         s.toml:2: key `server.port`: must be above 0\n  \
         s.toml: key `client.name`: absent table: no line\n  \
         s.toml: the whole file"
    );
}

#[test]
fn lines_of_keys_and_array_elements() {
    let text = "top = 1\n[a]\nb = [\n  \"x\",\n  \"y\",\n]\n[[c]]\n\nd = 1\n[[c]]\ne.f = 2\n\"odd key\" = 3\n";
    let doc = Document::parse(text).unwrap();
    for (key, line) in [
        ("top", Some(1)),
        ("a", Some(2)),
        ("a.b", Some(3)),
        ("a.b[1]", Some(5)),
        ("a.b[7]", Some(3)),
        ("c[0]", Some(9)),
        ("c[0].d", Some(9)),
        ("c[1].e.f", Some(11)),
        ("c[1].\"odd key\"", Some(12)),
        ("c[2]", Some(7)),
        ("zzz", None),
    ] {
        assert_eq!(doc.line_of_key(key), line, "{key}");
    }
    // And back: from an offset to the key path.
    let at = |needle: &str| {
        let start = text.find(needle).unwrap();
        doc.key_at(&(start..start + 1))
    };
    assert_eq!(at("\"y\""), "a.b[1]");
    assert_eq!(at("d = 1"), "c[0].d");
    assert_eq!(at("f = 2"), "c[1].e.f");
    assert_eq!(at("\"odd key\""), "c[1].\"odd key\"");
    assert_eq!(at("top"), "top");
}

#[test]
fn syntax_errors_are_all_reported() {
    let err = Document::parse("[server]\nport = \nname = \"x\"\nx = [1,\n")
        .err()
        .unwrap()
        .into_error("bad.toml");
    assert!(!err.problems.is_empty());
    assert_eq!(err.problems[0].line, Some(2), "{err}");
    assert!(
        err.problems[0].message.starts_with("TOML syntax error"),
        "{err}"
    );
    assert!(err.to_string().starts_with("bad.toml: "), "{err}");
}

#[test]
fn a_span_names_its_key() {
    let text = "[[rule]]\nid = \"a\"\nwhen = [\"x\", 3]\n";
    let doc = Document::parse(text).unwrap();
    let rule = doc.root().get("rule").unwrap();
    let DeValue::Array(rules) = rule.get_ref() else {
        panic!("array")
    };
    let DeValue::Table(t) = rules[0].get_ref() else {
        panic!("table")
    };
    let DeValue::Array(when) = t.get("when").unwrap().get_ref() else {
        panic!("array")
    };
    let mut c = Collector::new(&doc);
    c.at_span(when[1].span(), "must be a string");
    let err = c.finish("r.toml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "r.toml: 1 configuration problem\n  r.toml:3: key `rule[0].when[1]`: must be a string"
    );
}

#[test]
fn a_flood_of_syntax_errors_is_cut_at_max_listed() {
    // A file of stray control characters (fuzzing found one making 16,297 problems).
    let text: String = "\u{1}\n".repeat(8_000);
    let err = Document::parse(&text)
        .err()
        .unwrap()
        .into_error("flood.toml");
    assert_eq!(err.problems.len(), MAX_LISTED + 1, "{err}");
    assert_eq!(err.problems[0].line, Some(1));
    assert_eq!(err.problems[MAX_LISTED - 1].line, Some(MAX_LISTED));
    let last = &err.problems[MAX_LISTED];
    assert_eq!(last.line, None);
    assert!(
        last.message
            .ends_with("more TOML syntax errors, not listed (fix the ones above first)"),
        "{last:?}"
    );
}

#[test]
fn a_flood_of_bad_keys_is_cut_at_max_listed() {
    let mut text = String::from("[server]\n");
    for i in 0..300 {
        text.push_str(&format!("unknown{i} = 1\n"));
    }
    let (_, shown) = problems(&text);
    assert_eq!(shown.len(), MAX_LISTED + 1);
    assert_eq!(shown[0].0, Some(2));
    assert!(
        shown[0].2.starts_with("unknown field `unknown0`"),
        "{shown:?}"
    );
    assert_eq!(shown[MAX_LISTED].0, None);
    assert!(shown[MAX_LISTED].2.starts_with("more problems may follow"));
}

#[test]
fn lines_are_counted_from_an_index() {
    let doc = Document::parse("a = 1\n\nb = 2\n").unwrap();
    assert_eq!(doc.line(0), 1);
    assert_eq!(doc.line(5), 1); // the first newline itself
    assert_eq!(doc.line(6), 2);
    assert_eq!(doc.line(7), 3);
    assert_eq!(doc.line(1_000), 4); // past the end: after the last newline
}

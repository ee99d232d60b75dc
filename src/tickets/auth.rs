//! Is an agent's mail really from the agent? Reads the `Authentication-Results` header
//! (RFC 8601) that our receiving MTA added. Pure.
//!
//! Only ONE header counts: the first one, from the top down, whose authserv-id is ours. Our MTA
//! prepends its header above everything the sender wrote (and RFC 8601 §5 obliges it to remove
//! headers claiming its id from incoming mail), so any header further down is the sender's
//! own text, whatever it claims. Within that header, each result is read with its own
//! properties (`dkim=pass header.d=…` ties `header.d` to that DKIM result only), quoted
//! strings and comments are honoured (a `;` inside `"…"` or `(…)` separates nothing), and a
//! result that cannot be parsed counts for nothing.
//!
//! A pass is either DMARC `pass` for the From domain (`header.from`), or DKIM `pass` whose own
//! signing domain `header.d` aligns with the From domain (equal, or a parent domain of it:
//! DMARC's relaxed alignment, without a public-suffix list, so a bare TLD never aligns). Any
//! `dmarc=fail` in the header refuses, whatever else it says. SPF alone proves nothing about
//! the From line.

/// Ok when the first `Authentication-Results` header of `authserv_id` among `results` (raw
/// header values, top-down as in the message) holds a DMARC or aligned DKIM pass for
/// `from_domain`, the domain of the mail's From address; otherwise why not.
pub fn verify(results: &[String], authserv_id: &str, from_domain: &str) -> Result<(), String> {
    let ours = authserv_id.trim();
    if ours.is_empty() {
        return Err("no trusted authserv-id is configured ([policy] authserv_id)".into());
    }
    let Some(header) = results
        .iter()
        .filter_map(|r| parse_header(r))
        .find(|h| h.authserv_id.eq_ignore_ascii_case(ours))
    else {
        return Err(format!(
            "no Authentication-Results header from the trusted authserv-id `{ours}`"
        ));
    };
    let from = from_domain
        .trim()
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if header
        .results
        .iter()
        .any(|r| r.method == "dmarc" && r.result == "fail")
    {
        return Err(format!(
            "Authentication-Results from `{ours}` show dmarc=fail for {from}"
        ));
    }
    let passes = header.results.iter().any(|r| {
        r.result == "pass"
            && match r.method.as_str() {
                "dmarc" => r.prop("header.from").is_some_and(|d| same_domain(d, &from)),
                "dkim" => r.prop("header.d").is_some_and(|d| aligned(d, &from)),
                _ => false,
            }
    });
    if passes {
        Ok(())
    } else {
        Err(format!(
            "Authentication-Results from `{ours}` show no dmarc=pass or aligned dkim=pass for {from}"
        ))
    }
}

fn normal(domain: &str) -> String {
    domain.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn same_domain(a: &str, from: &str) -> bool {
    let a = normal(a);
    !a.is_empty() && a == from
}

/// DMARC relaxed alignment, approximated without a public-suffix list: the signing domain is
/// the From domain or a parent of it with at least two labels.
fn aligned(signing: &str, from: &str) -> bool {
    let d = normal(signing);
    if d.is_empty() {
        return false;
    }
    d == from || (d.contains('.') && from.ends_with(&format!(".{d}")))
}

/// One parsed header: its authserv-id and its results.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    authserv_id: String,
    results: Vec<ResInfo>,
}

/// One `method=result ptype.property=value ...` clause.
#[derive(Debug, PartialEq, Eq)]
struct ResInfo {
    method: String,
    result: String,
    props: Vec<(String, String)>,
}

impl ResInfo {
    fn prop(&self, name: &str) -> Option<&str> {
        self.props
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses one header value; None when not even the authserv-id can be read.
fn parse_header(value: &str) -> Option<Header> {
    let mut c = Cursor::new(value);
    c.skip_cfws();
    let authserv_id = c.single_value().filter(|id| !id.is_empty())?;
    let mut results = Vec::new();
    loop {
        c.skip_cfws();
        match c.peek() {
            None => break,
            Some(';') => {
                c.bump();
                if let Some(r) = c.resinfo() {
                    results.push(r);
                }
            }
            // An authres-version, or junk before the first `;`.
            Some(_) => c.skip_clause(),
        }
    }
    Some(Header {
        authserv_id,
        results,
    })
}

/// A position in a header value. Every read skips comments and honours quoted strings.
struct Cursor<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Cursor<'a> {
        Cursor {
            chars: s.chars().peekable(),
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.chars.peek().copied()
    }

    fn bump(&mut self) -> Option<char> {
        self.chars.next()
    }

    /// Skips folding white space and (nested) comments.
    fn skip_cfws(&mut self) {
        while let Some(ch) = self.peek() {
            if ch.is_whitespace() {
                self.bump();
            } else if ch == '(' {
                self.comment();
            } else {
                break;
            }
        }
    }

    fn comment(&mut self) {
        let mut depth = 0usize;
        while let Some(ch) = self.bump() {
            match ch {
                '\\' => {
                    self.bump();
                }
                '(' => depth += 1,
                ')' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return;
                    }
                }
                _ => {}
            }
        }
    }

    /// The content of a quoted string (the opening quote is next), unescaped; false when
    /// the string never ends.
    fn quoted(&mut self, out: &mut String) -> bool {
        self.bump();
        while let Some(ch) = self.bump() {
            match ch {
                '"' => return true,
                '\\' => {
                    if let Some(next) = self.bump() {
                        out.push(next);
                    }
                }
                _ => out.push(ch),
            }
        }
        false
    }

    /// A keyword: letters, digits, `-` and `_` (methods, results, ptypes, properties).
    fn keyword(&mut self) -> String {
        let mut out = String::new();
        while let Some(ch) = self.peek() {
            if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' {
                out.push(ch);
                self.bump();
            } else {
                break;
            }
        }
        out.to_ascii_lowercase()
    }

    /// A value: a token, a quoted string, or (for `[local-part] "@" domain`) quoted and
    /// unquoted pieces run together. Ends at white space, `;`, or a comment. None when a
    /// quoted string never ends.
    fn value(&mut self) -> Option<String> {
        let mut out = String::new();
        while let Some(ch) = self.peek() {
            match ch {
                '"' => {
                    if !self.quoted(&mut out) {
                        return None;
                    }
                }
                ';' | '(' => break,
                c if c.is_whitespace() => break,
                c => {
                    out.push(c);
                    self.bump();
                }
            }
        }
        Some(out)
    }

    /// A value that is ONE token or ONE quoted string (RFC 8601's `value`), as the
    /// authserv-id is: `mx.""example.org` is neither, and must not pass for `mx.example.org`
    /// (our MTA, which strips headers naming its own id, would not recognise it as its own).
    /// Control characters are refused too.
    fn single_value(&mut self) -> Option<String> {
        let mut out = String::new();
        if self.peek() == Some('"') {
            if !self.quoted(&mut out) {
                return None;
            }
        } else {
            while let Some(ch) = self.peek() {
                match ch {
                    '"' => return None,
                    ';' | '(' => break,
                    c if c.is_whitespace() => break,
                    c => {
                        out.push(c);
                        self.bump();
                    }
                }
            }
        }
        // The value ends here: white space, `;`, a comment or the end must follow.
        match self.peek() {
            None | Some(';') | Some('(') => {}
            Some(c) if c.is_whitespace() => {}
            Some(_) => return None,
        }
        (!out.chars().any(char::is_control)).then_some(out)
    }

    /// Skips to the next `;` that is outside quotes and comments (not consuming it).
    fn skip_clause(&mut self) {
        while let Some(ch) = self.peek() {
            match ch {
                ';' => return,
                '"' => {
                    self.quoted(&mut String::new());
                }
                '(' => self.comment(),
                _ => {
                    self.bump();
                }
            }
        }
    }

    /// One resinfo after its `;`. A malformed one is skipped whole and counts for nothing.
    fn resinfo(&mut self) -> Option<ResInfo> {
        let parsed = self.resinfo_parts();
        if parsed.is_none() {
            self.skip_clause();
        }
        parsed
    }

    fn resinfo_parts(&mut self) -> Option<ResInfo> {
        self.skip_cfws();
        let method = self.keyword();
        if method.is_empty() {
            return None;
        }
        self.skip_cfws();
        if self.peek() == Some('/') {
            self.bump();
            self.skip_cfws();
            self.keyword();
            self.skip_cfws();
        }
        if self.bump() != Some('=') {
            return None;
        }
        self.skip_cfws();
        let result = self.keyword();
        if result.is_empty() {
            return None;
        }
        let mut props = Vec::new();
        loop {
            self.skip_cfws();
            match self.peek() {
                None | Some(';') => break,
                _ => {}
            }
            let ptype = self.keyword();
            if ptype.is_empty() {
                return None;
            }
            self.skip_cfws();
            match self.bump() {
                Some('.') => {
                    self.skip_cfws();
                    let property = self.keyword();
                    self.skip_cfws();
                    if property.is_empty() || self.bump() != Some('=') {
                        return None;
                    }
                    self.skip_cfws();
                    let v = self.value()?;
                    props.push((format!("{ptype}.{property}"), v));
                }
                // `reason=...` (and any other bare `key=value`): read and not used.
                Some('=') => {
                    self.skip_cfws();
                    self.value()?;
                }
                _ => return None,
            }
        }
        Some(ResInfo {
            method,
            result,
            props,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "mx.vendor.example";

    fn check(headers: &[&str]) -> Result<(), String> {
        let v: Vec<String> = headers.iter().map(|s| s.to_string()).collect();
        verify(&v, ID, "vendor.example")
    }

    #[test]
    fn dmarc_or_aligned_dkim_pass() {
        for h in [
            "mx.vendor.example; spf=pass smtp.mailfrom=vendor.example; dkim=pass (2048-bit key) header.d=vendor.example header.s=s1; dmarc=pass (p=REJECT) header.from=vendor.example",
            "MX.Vendor.Example 1; dmarc=pass header.from=Vendor.Example",
            "mx.vendor.example; dkim=pass header.d=\"vendor.example\"",
            "mx.vendor.example;\r\n\tdkim=pass\r\n header.d=vendor.example",
            "mx.vendor.example; dkim/1 = pass header . d = vendor.example",
            "mx.vendor.example; dkim=pass reason=\"good; really\" header.d=vendor.example",
            "mx.vendor.example; dkim=fail header.d=other.example; dkim=pass header.d=vendor.example",
        ] {
            assert_eq!(check(&[h]), Ok(()), "{h}");
        }
        // A parent signing domain aligns (relaxed), a bare TLD never does.
        let v = vec!["mx.vendor.example; dkim=pass header.d=vendor.example".to_string()];
        assert!(verify(&v, ID, "mail.vendor.example").is_ok());
        let tld = vec!["mx.vendor.example; dkim=pass header.d=example".to_string()];
        assert!(verify(&tld, ID, "vendor.example").is_err());
    }

    #[test]
    fn failing_unaligned_or_other_results_are_refused() {
        for h in [
            "mx.vendor.example; dmarc=fail header.from=vendor.example",
            "mx.vendor.example; spf=pass smtp.mailfrom=vendor.example",
            "mx.vendor.example; dkim=pass header.d=evil.example",
            "mx.vendor.example; dkim=pass header.d=notvendor.example",
            "mx.vendor.example; dkim=pass header.i=@vendor.example",
            "mx.vendor.example; dmarc=pass header.from=mail.vendor.example",
            "mx.vendor.example; none",
            "mx.vendor.example (dmarc=pass header.from=vendor.example); dkim=fail header.d=vendor.example",
            "mx.vendor.example; dkim=pass header.d=vendor.example; dmarc=fail header.from=vendor.example",
            "mx.vendor.example; dkim=neutral header.d=vendor.example",
            "",
        ] {
            assert!(check(&[h]).is_err(), "{h}");
        }
        assert!(check(&[]).is_err());
        let unset = vec!["mx.vendor.example; dmarc=pass header.from=vendor.example".to_string()];
        assert!(verify(&unset, "", "vendor.example").is_err());
    }

    /// Finding 2 of the security review: a forged LOWER header claiming our id loses to the
    /// real top one.
    #[test]
    fn only_the_topmost_header_of_our_id_counts() {
        let real = "mx.vendor.example; dkim=fail header.d=vendor.example; dmarc=fail header.from=vendor.example";
        let forged = "mx.vendor.example; dmarc=pass header.from=vendor.example";
        assert!(check(&[real, forged]).is_err());
        // Other servers' headers above ours are skipped; ours is still the one that counts.
        let relay = "relay.internal.example; dmarc=pass header.from=vendor.example";
        assert!(check(&[relay, real, forged]).is_err());
        assert!(check(&[relay, forged]).is_ok());
        // Another server's verdict alone proves nothing.
        let e = check(&[relay]).unwrap_err();
        assert!(e.contains("no Authentication-Results"), "{e}");
    }

    /// Finding 2: a `;` inside a quoted value the sender controls splits nothing.
    #[test]
    fn quoted_semicolons_do_not_split_results() {
        let h = "mx.vendor.example; spf=pass smtp.mailfrom=\"x;dkim=pass header.d=vendor.example y=\"@evil.example; dkim=fail header.d=evil.example";
        assert!(check(&[h]).is_err());
        let parsed = parse_header(h).unwrap();
        assert_eq!(parsed.results.len(), 2, "{parsed:?}");
        assert_eq!(
            parsed.results[0].prop("smtp.mailfrom"),
            Some("x;dkim=pass header.d=vendor.example y=@evil.example")
        );
        // The same inside a comment.
        let c = "mx.vendor.example; spf=pass (x;dkim=pass header.d=vendor.example) smtp.mailfrom=evil.example";
        assert!(check(&[c]).is_err());
    }

    /// Finding 2: a property belongs to its own method's result.
    #[test]
    fn properties_are_tied_to_their_method() {
        let h = "mx.vendor.example; dkim=pass header.d=evil.example header.from=vendor.example";
        assert!(check(&[h]).is_err());
        let h = "mx.vendor.example; dmarc=pass header.d=vendor.example header.from=evil.example";
        assert!(check(&[h]).is_err());
        let h = "mx.vendor.example; dkim=pass header.d=evil.example; dmarc=none header.from=vendor.example";
        assert!(check(&[h]).is_err());
    }

    /// Found by fuzzing: empty quoted strings inside the authserv-id spelled our id in a way
    /// our MTA would not strip as its own.
    #[test]
    fn the_authserv_id_is_one_token_or_one_quoted_string() {
        for h in [
            "mx.\"\"vendor.example; dmarc=pass header.from=vendor.example",
            "mx.vendor.exampl\"e\"; dmarc=pass header.from=vendor.example",
            "\"mx.vendor\".example; dmarc=pass header.from=vendor.example",
            "mx.vendor.example\u{1b}; dmarc=pass header.from=vendor.example",
        ] {
            assert!(check(&[h]).is_err(), "{h}");
        }
        let quoted = "\"mx.vendor.example\"; dmarc=pass header.from=vendor.example";
        assert!(check(&[quoted]).is_ok());
    }

    #[test]
    fn malformed_results_count_for_nothing() {
        for h in [
            "mx.vendor.example; dmarc header.from=vendor.example",
            "mx.vendor.example; =pass header.from=vendor.example",
            "mx.vendor.example; dmarc=pass header.from",
            "mx.vendor.example; dmarc=pass \"header.from=vendor.example\"",
            "mx.vendor.example; dmarc=pass header.from=vendor.example\"",
            "(unterminated mx.vendor.example; dmarc=pass header.from=vendor.example",
            "\"mx.vendor.example; dmarc=pass header.from=vendor.example",
        ] {
            assert!(check(&[h]).is_err(), "{h}");
        }
        // Escapes inside comments and quoted strings.
        let h = r#"mx.vendor.example (a \) b; dmarc=pass header.from=vendor.example); dkim=pass header.d="vendor.example""#;
        assert!(check(&[h]).is_ok());
    }
}

//! Is an agent's mail really from the agent? Checks the `Authentication-Results` header
//! (RFC 8601) that our receiving MTA added. Pure.
//!
//! Only results under the trusted authserv-id count: RFC 8601 §5 obliges that MTA to remove
//! headers claiming its id from incoming mail, so a sender cannot forge one. A pass must come
//! from DMARC or DKIM and name the agent's domain (or a subdomain of it) in `header.d`,
//! `header.i` or `header.from`; SPF alone proves nothing about the From line.

/// Ok when `results` (raw header values) hold a DMARC or DKIM pass for `agent_domain` from
/// `authserv_id`; otherwise why not, for the held note and the ingest output.
pub fn verify(results: &[String], authserv_id: &str, agent_domain: &str) -> Result<(), String> {
    let trusted: Vec<&String> = results
        .iter()
        .filter(|r| authserv_id_of(r).is_some_and(|id| id.eq_ignore_ascii_case(authserv_id.trim())))
        .collect();
    if trusted.is_empty() {
        return Err(format!(
            "no Authentication-Results header from the trusted authserv-id `{authserv_id}`"
        ));
    }
    for header in &trusted {
        for res in resinfos(header) {
            let method_ok = matches!(res.method.as_str(), "dmarc" | "dkim");
            if method_ok && res.result == "pass" && res.names_domain(agent_domain) {
                return Ok(());
            }
        }
    }
    Err(format!(
        "Authentication-Results from `{authserv_id}` show no dmarc=pass or dkim=pass for {agent_domain}"
    ))
}

/// One `method=result prop=value ...` clause.
#[derive(Debug, PartialEq, Eq)]
struct ResInfo {
    method: String,
    result: String,
    props: Vec<(String, String)>,
}

impl ResInfo {
    fn names_domain(&self, domain: &str) -> bool {
        let domain = domain.to_ascii_lowercase();
        self.props.iter().any(|(k, v)| {
            let d = match k.as_str() {
                "header.d" | "header.from" => v.as_str(),
                "header.i" => v.rsplit('@').next().unwrap_or(""),
                _ => return false,
            };
            let d = d.to_ascii_lowercase();
            d == domain || d.ends_with(&format!(".{domain}"))
        })
    }
}

/// Removes RFC 5322 comments `( ... )`, nested, honouring quoted strings.
fn uncomment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            if depth == 0 {
                out.push(c);
            }
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn authserv_id_of(header: &str) -> Option<String> {
    let text = uncomment(header);
    let first = text.split(';').next()?.split_whitespace().next()?;
    Some(first.to_string())
}

fn resinfos(header: &str) -> Vec<ResInfo> {
    let text = uncomment(header);
    text.split(';')
        .skip(1)
        .filter_map(|clause| {
            let mut words = clause.split_whitespace();
            let (method, result) = words.next()?.split_once('=')?;
            let props = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_ascii_lowercase(), v.trim_matches('"').to_string()))
                .collect();
            Some(ResInfo {
                method: method.to_ascii_lowercase(),
                result: result.to_ascii_lowercase(),
                props,
            })
        })
        .collect()
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
    fn dmarc_or_dkim_pass_for_the_domain() {
        assert!(check(&["mx.vendor.example; spf=pass smtp.mailfrom=vendor.example; dkim=pass (2048-bit key) header.d=vendor.example header.s=s1; dmarc=pass (p=REJECT) header.from=vendor.example"]).is_ok());
        assert!(check(&["MX.Vendor.Example 1; dmarc=pass header.from=Vendor.Example"]).is_ok());
        assert!(check(&["mx.vendor.example; dkim=pass header.i=@mail.vendor.example"]).is_ok());
        assert!(check(&["mx.vendor.example; dkim=pass header.d=\"vendor.example\""]).is_ok());
    }

    #[test]
    fn untrusted_or_failing_results_are_refused() {
        // Another server's verdict.
        let e = check(&["mx.evil.example; dmarc=pass header.from=vendor.example"]).unwrap_err();
        assert!(e.contains("no Authentication-Results"), "{e}");
        // Failing, SPF only, wrong domain, look-alike domain.
        for h in [
            "mx.vendor.example; dmarc=fail header.from=vendor.example",
            "mx.vendor.example; spf=pass smtp.mailfrom=vendor.example",
            "mx.vendor.example; dkim=pass header.d=evil.example",
            "mx.vendor.example; dkim=pass header.d=notvendor.example",
            "mx.vendor.example; none",
            "mx.vendor.example (dmarc=pass header.from=vendor.example); dkim=fail header.d=vendor.example",
        ] {
            assert!(check(&[h]).is_err(), "{h}");
        }
        assert!(check(&[]).is_err());
    }

    #[test]
    fn one_good_header_among_several() {
        assert!(check(&[
            "mx.evil.example; dmarc=fail",
            "mx.vendor.example; dkim=pass header.d=vendor.example",
        ])
        .is_ok());
    }
}

//! Email addresses as the support domain compares them.
//!
//! Normalised once at the edge: trimmed, angle brackets removed, domain lower-cased. The local
//! part keeps its case for display but compares case-insensitively (as every real mailbox
//! provider does), and `local+detail` splits into the base and the detail (our access keys).

use std::fmt;

/// A syntactically plausible `local@domain` address.
#[derive(Debug, Clone, Eq, serde::Serialize)]
#[serde(into = "String")]
pub struct EmailAddress {
    /// As written by the sender (trimmed), used when we write back.
    local: String,
    /// Lower-cased.
    domain: String,
}

impl From<EmailAddress> for String {
    fn from(a: EmailAddress) -> String {
        a.to_string()
    }
}

impl EmailAddress {
    /// Parses `addr`, tolerating surrounding whitespace and `<...>`; None if it is no address.
    pub fn parse(addr: &str) -> Option<EmailAddress> {
        let a = addr
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .trim();
        let (local, domain) = a.rsplit_once('@')?;
        let ok_local = !local.is_empty()
            && local.len() <= 64
            && !local
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>');
        let ok_domain = !domain.is_empty()
            && domain.len() <= 255
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain.chars().all(|c| {
                c.is_alphanumeric() || c == '.' || c == '-' || c == '[' || c == ']' || c == ':'
            });
        (ok_local && ok_domain).then(|| EmailAddress::from_parts(local, domain))
    }

    /// Builds from trusted parts (config defaults, tests).
    pub fn from_parts(local: &str, domain: &str) -> EmailAddress {
        EmailAddress {
            local: local.to_string(),
            domain: domain.to_ascii_lowercase(),
        }
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The comparison key: the whole address lower-cased.
    pub fn key(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain)
    }

    /// The key rate limits count by: the address without its `+detail`, lower-cased, so
    /// `Bob+1@x` … `bob+100@x` are one sender (`bob@x`).
    pub fn rate_key(&self) -> String {
        let local = match self.local.split_once('+') {
            Some((base, _)) if !base.is_empty() => base,
            _ => self.local.as_str(),
        };
        format!("{}@{}", local.to_lowercase(), self.domain)
    }

    /// `local+detail@domain` → (`local@domain`, `detail`).
    pub fn split_detail(&self) -> Option<(EmailAddress, &str)> {
        let (base, detail) = self.local.split_once('+')?;
        Some((EmailAddress::from_parts(base, &self.domain), detail))
    }

    /// `local+detail@domain` for our own address.
    pub fn with_detail(&self, detail: &str) -> EmailAddress {
        EmailAddress::from_parts(&format!("{}+{detail}", self.local), &self.domain)
    }
}

impl PartialEq for EmailAddress {
    fn eq(&self, other: &Self) -> bool {
        self.domain == other.domain && self.local.to_lowercase() == other.local.to_lowercase()
    }
}

/// From a config string: `"x"` that is no address is refused with ```x` is not an email
/// address``. Checked in the visitor, so inside an array the error is placed at the element.
impl<'de> serde::Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<EmailAddress, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = EmailAddress;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an email address")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<EmailAddress, E> {
                EmailAddress::parse(s)
                    .ok_or_else(|| E::custom(format!("`{s}` is not an email address")))
            }
        }
        d.deserialize_str(Visitor)
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_compares() {
        let a = EmailAddress::parse("  <Jane.Doe@Clinic.EXAMPLE> ").unwrap();
        assert_eq!(a.to_string(), "Jane.Doe@clinic.example");
        assert_eq!(a, EmailAddress::parse("jane.doe@clinic.example").unwrap());
        assert_eq!(a.key(), "jane.doe@clinic.example");
    }

    #[test]
    fn rejects_non_addresses() {
        for bad in [
            "",
            "@",
            "a@",
            "@b",
            "no at sign",
            "a b@c.d",
            "a@.c",
            "a@b c",
        ] {
            assert!(EmailAddress::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn plus_detail() {
        let a = EmailAddress::parse("support+abc123@example.test").unwrap();
        let (base, detail) = a.split_detail().unwrap();
        assert_eq!(base.to_string(), "support@example.test");
        assert_eq!(detail, "abc123");
        assert_eq!(base.with_detail("k").to_string(), "support+k@example.test");
        let bob = EmailAddress::parse("Bob+17@Example.TEST").unwrap();
        assert_eq!(bob.rate_key(), "bob@example.test");
        assert_eq!(base.rate_key(), "support@example.test");
    }
}

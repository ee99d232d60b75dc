//! Who we are: the support desk's name, address, public URL, phone and subject tag. Built
//! once from the configuration at start-up (and on reload), then only read. Pure.

use crate::mail::address::EmailAddress;
use crate::mail::compose::Party;

use super::notify::agent_address;
use super::{AccessKey, TicketTag};

/// The support desk as customers and agents see it.
#[derive(Debug, Clone)]
pub struct Desk {
    /// Shown in mails ("Example Support").
    pub name: String,
    /// The address customers write to; plus-addresses (`local+KEY@domain`) derive from it.
    pub address: EmailAddress,
    /// Every address that is ours, the support address first: mail from any of them (or a
    /// plus-address of one) is our own, and keys in their plus-addresses name tickets.
    pub own: Vec<EmailAddress>,
    /// Base of every link, without a trailing slash; may carry a path prefix
    /// (`https://example.org/support`).
    pub public_url: String,
    /// Told to senders of level 1–2 tickets (empty: none configured).
    pub phone: String,
    /// The subject tag, `[#{number}]` by default.
    pub tag: TicketTag,
}

impl Desk {
    /// `own` lists further addresses delivering into our mailboxes (the support address is
    /// added first); `public_url` is an absolute http(s) URL, validated by the caller.
    pub fn new(
        name: &str,
        address: EmailAddress,
        others: &[EmailAddress],
        public_url: &str,
        phone: &str,
        tag: TicketTag,
    ) -> Desk {
        let mut own = vec![address.clone()];
        own.extend(others.iter().filter(|a| **a != address).cloned());
        Desk {
            name: name.to_string(),
            address,
            own,
            public_url: public_url.trim_end_matches('/').to_string(),
            phone: phone.to_string(),
            tag,
        }
    }

    /// `{public_url}{path}`; `path` starts with `/`.
    pub fn link(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }

    /// The customer's page of a ticket: `{public_url}/t/{ACCESSKEY}`.
    pub fn ticket_link(&self, key: &AccessKey) -> String {
        self.link(&format!("/t/{}", key.as_str()))
    }

    /// A Help Center article: `{public_url}/help/{slug}`.
    pub fn help_link(&self, slug: &str) -> String {
        self.link(&format!("/help/{slug}"))
    }

    /// One attachment of a ticket's public thread: `{public_url}/t/{ACCESSKEY}/a/{ID}`.
    pub fn attachment_link(&self, key: &AccessKey, id: i64) -> String {
        format!("{}/a/{id}", self.ticket_link(key))
    }

    /// True for one of our addresses or a plus-address of one.
    pub fn is_ours(&self, a: &EmailAddress) -> bool {
        self.own
            .iter()
            .any(|own| own == a || a.split_detail().is_some_and(|(base, _)| base == *own))
    }

    /// We, as a mail's From: `Example Support <support@example.test>`.
    pub fn party(&self) -> Party {
        Party {
            name: Some(self.name.clone()),
            email: self.address.clone(),
        }
    }

    /// The Reply-To of a customer's mail: an answer to `support+KEY@domain` names the
    /// ticket even without thread headers.
    pub fn customer_channel(&self, key: &AccessKey) -> Party {
        Party {
            name: Some(self.name.clone()),
            email: self.address.with_detail(key.as_str()),
        }
    }

    /// The Reply-To of an agent's mail: an answer to `support+a-KEY@domain` threads by
    /// this address even without headers.
    pub fn agent_channel(&self, agent_key: &AccessKey) -> Party {
        Party {
            name: Some(self.name.clone()),
            email: agent_address(&self.address, agent_key),
        }
    }

    /// The domain of our own Message-IDs.
    pub fn domain(&self) -> &str {
        self.address.domain()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desk(url: &str) -> Desk {
        let a = |s: &str| EmailAddress::parse(s).unwrap();
        Desk::new(
            "Support",
            a("support@example.test"),
            &[a("help@example.test"), a("support@example.test")],
            url,
            "+1 555 0100",
            TicketTag::new("[#{number}]").unwrap(),
        )
    }

    #[test]
    fn links_honour_a_path_prefix() {
        let key = AccessKey::parse("abcdefghijklmnopqrst").unwrap();
        let d = desk("https://example.org/support/");
        assert_eq!(
            d.ticket_link(&key),
            "https://example.org/support/t/abcdefghijklmnopqrst"
        );
        assert_eq!(
            d.attachment_link(&key, 7),
            "https://example.org/support/t/abcdefghijklmnopqrst/a/7"
        );
        assert_eq!(
            desk("http://127.0.0.1:8080").link("/"),
            "http://127.0.0.1:8080/"
        );
    }

    #[test]
    fn our_addresses_and_their_plus_addresses() {
        let d = desk("https://example.org");
        assert_eq!(d.own.len(), 2, "the support address once, first");
        for ours in [
            "support@example.test",
            "SUPPORT+abc@Example.TEST",
            "help+x@example.test",
        ] {
            assert!(d.is_ours(&EmailAddress::parse(ours).unwrap()), "{ours}");
        }
        assert!(!d.is_ours(&EmailAddress::parse("support@other.test").unwrap()));
    }
}

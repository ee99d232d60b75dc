//! CSRF tokens for every form (double submit, signed): the browser holds a random value in
//! a cookie (`supportd_csrf`, HttpOnly, SameSite=Lax); each form carries
//! `TIME.HMAC(secret, value, TIME)`. A POST is done only when its token was made for the
//! cookie it came with, with our secret, less than [`TOKEN_HOURS`] ago. Another site can
//! neither read the cookie nor make a token for it. The secret is in the database, so every
//! process serving these pages (run, serve) accepts the others' tokens.

use axum::http::{header, HeaderMap, HeaderValue};
use chrono::{DateTime, Utc};
use cookie::{Cookie, SameSite};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{hex, random_token, Web, WebError};

pub const COOKIE: &str = "supportd_csrf";
/// A form older than this is refused ("reload the page").
pub const TOKEN_HOURS: i64 = 12;

/// The browser's CSRF cookie value: the one it sent, or a new one to set.
pub struct CsrfCookie {
    value: String,
    new: bool,
}

/// A cookie named `name` of the request.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_string())
}

/// A `Set-Cookie` value for `name` under the web's prefix: HttpOnly, SameSite=Lax, Secure
/// when `public_url` is https; `max_age` None = until the browser closes; Some(0) = remove.
pub fn set_cookie(web: &Web, name: &str, value: &str, max_age: Option<i64>) -> HeaderValue {
    let path = web.path("/");
    let mut c = Cookie::build((name.to_string(), value.to_string()))
        .path(path)
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(web.secure);
    if let Some(secs) = max_age {
        c = c.max_age(cookie::time::Duration::seconds(secs));
    }
    HeaderValue::from_str(&c.build().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("supportd_invalid=1"))
}

impl CsrfCookie {
    pub fn of(headers: &HeaderMap) -> CsrfCookie {
        match cookie_value(headers, COOKIE).filter(|v| v.len() == 64) {
            Some(value) => CsrfCookie { value, new: false },
            None => CsrfCookie {
                value: random_token(),
                new: true,
            },
        }
    }

    /// A token for a form of this page.
    pub fn token(&self, web: &Web, now: DateTime<Utc>) -> String {
        let t = now.timestamp();
        format!("{t}.{}", hex(&mac(web, &self.value, t)))
    }

    /// The `Set-Cookie` header, when the browser has no cookie yet.
    pub fn set(&self, web: &Web) -> Option<HeaderValue> {
        self.new.then(|| set_cookie(web, COOKIE, &self.value, None))
    }
}

fn mac(web: &Web, value: &str, t: i64) -> Vec<u8> {
    signer(web, value, t).finalize().into_bytes().to_vec()
}

fn signer(web: &Web, value: &str, t: i64) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut m = match Hmac::<Sha256>::new_from_slice(&web.secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    };
    m.update(b"supportd csrf v1\0");
    m.update(value.as_bytes());
    m.update(b"\0");
    m.update(t.to_string().as_bytes());
    m
}

/// A form's `token` that is not [`valid`] refuses the form, with a way back to `back` (a
/// path under the public URL).
pub fn require(web: &Web, headers: &HeaderMap, token: &str, back: &str) -> Result<(), WebError> {
    if valid(web, headers, token, web.shared.now()) {
        Ok(())
    } else {
        Err(WebError::csrf().back(web.path(back)))
    }
}

/// Whether `token` (a form's `csrf` field) was made for the request's cookie, by us, within
/// [`TOKEN_HOURS`].
pub fn valid(web: &Web, headers: &HeaderMap, token: &str, now: DateTime<Utc>) -> bool {
    let Some(value) = cookie_value(headers, COOKIE) else {
        return false;
    };
    let Some((t, sig)) = token.split_once('.') else {
        return false;
    };
    let Ok(t) = t.parse::<i64>() else {
        return false;
    };
    let age = now.timestamp() - t;
    if !(-60..=TOKEN_HOURS * 3600).contains(&age) {
        return false;
    }
    let Some(sig) = unhex(sig) else {
        return false;
    };
    signer(web, &value, t).verify_slice(&sig).is_ok()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

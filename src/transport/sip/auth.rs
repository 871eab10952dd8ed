//! Optional digest authentication of new calls (RFC 3261 section 22, MD5 with
//! `qop=auth`, RFC 2617): with `sip.auth_users` set, an INVITE that opens a
//! call must carry the credentials of one of them, else it gets `401` with a
//! challenge. OPTIONS (the SBC's probe) and requests inside a call are not
//! challenged. Nonces are stateless: the time they were made and a keyed
//! hash of it, good for [`NONCE_LIFETIME_S`].

use anyhow::{bail, Result};
use md5::{Digest, Md5};
use rsipstack::sip::headers::auth::AuthQop;
use rsipstack::sip::headers::typed::Authorization;
use sha2::Sha256;
use std::collections::BTreeMap;

/// How long a nonce is accepted, in seconds.
pub const NONCE_LIFETIME_S: u64 = 300;

/// The realm, the users' keys and the nonce secret.
pub struct DigestAuth {
    realm: String,
    /// User name -> HA1 (MD5 of `user:realm:password`), hex.
    users: BTreeMap<String, String>,
    secret: [u8; 32],
}

impl std::fmt::Debug for DigestAuth {
    // The keys and the secret stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestAuth")
            .field("realm", &self.realm)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Why a request was not let in.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// No `Authorization` header: challenge.
    Missing,
    /// Our nonce, but too old: challenge with `stale=true` (the client
    /// retries without asking its user).
    Stale,
    /// Unknown user, another realm, a nonce we did not make, a malformed
    /// header or a wrong response (the user name, when one was given).
    Wrong(Option<String>),
}

fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

impl DigestAuth {
    /// `None` when no users are configured; an error naming the entry when
    /// one is not `user:password` or a user appears twice.
    pub fn from_config(realm: &str, users: &[String]) -> Result<Option<DigestAuth>> {
        if users.is_empty() {
            return Ok(None);
        }
        let realm = realm.trim();
        if realm.is_empty() || realm.contains('"') {
            bail!("sip.auth_realm {realm:?} must be a non-empty name without quotes");
        }
        let mut keys = BTreeMap::new();
        for (i, entry) in users.iter().enumerate() {
            let Some((user, password)) = entry.split_once(':') else {
                bail!("sip.auth_users[{i}] is not \"user:password\"");
            };
            let user = user.trim();
            if user.is_empty() || password.is_empty() || user.contains('"') {
                bail!("sip.auth_users[{i}]: the user name and the password must not be empty (user {user:?})");
            }
            let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
            if keys.insert(user.to_string(), ha1).is_some() {
                bail!("sip.auth_users: user {user:?} is listed twice");
            }
        }
        Ok(Some(DigestAuth {
            realm: realm.to_string(),
            users: keys,
            secret: rand::random(),
        }))
    }

    fn nonce_tag(&self, made: u64) -> String {
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(made.to_be_bytes());
        hex::encode(&h.finalize()[..12])
    }

    /// A nonce made at `now` (seconds since the epoch).
    pub fn nonce(&self, now: u64) -> String {
        format!("{now:x}.{}", self.nonce_tag(now))
    }

    /// The `WWW-Authenticate` value of a challenge made at `now`.
    pub fn challenge(&self, now: u64, stale: bool) -> String {
        let stale = if stale { ", stale=true" } else { "" };
        format!(
            "Digest realm=\"{}\", nonce=\"{}\", algorithm=MD5, qop=\"auth\"{stale}",
            self.realm,
            self.nonce(now)
        )
    }

    /// The user a request of `method` with this `Authorization` value comes
    /// from, checked at `now`.
    pub fn check(&self, method: &str, header: Option<&str>, now: u64) -> Result<String, Refused> {
        let Some(value) = header else {
            return Err(Refused::Missing);
        };
        let a = Authorization::parse(value).map_err(|_| Refused::Wrong(None))?;
        let wrong = || Refused::Wrong(Some(a.username.clone()));
        let ha1 = self.users.get(&a.username).ok_or_else(wrong)?;
        if a.realm != self.realm {
            return Err(wrong());
        }
        let (made, tag) = a.nonce.split_once('.').ok_or_else(wrong)?;
        let made = u64::from_str_radix(made, 16).map_err(|_| wrong())?;
        if tag != self.nonce_tag(made) || made > now + 5 {
            return Err(wrong());
        }
        // The URI exactly as the client hashed it.
        let uri =
            rsipstack::dialog::authenticate::extract_digest_uri_raw(value).ok_or_else(wrong)?;
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let expected = match &a.qop {
            None => md5_hex(&format!("{ha1}:{}:{ha2}", a.nonce)),
            Some(AuthQop::Auth { cnonce, nc }) => {
                md5_hex(&format!("{ha1}:{}:{nc:08x}:{cnonce}:auth:{ha2}", a.nonce))
            }
            Some(AuthQop::AuthInt { .. }) => return Err(wrong()),
        };
        if !a.response.eq_ignore_ascii_case(&expected) {
            return Err(wrong());
        }
        if now.saturating_sub(made) > NONCE_LIFETIME_S {
            return Err(Refused::Stale);
        }
        Ok(a.username)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> DigestAuth {
        DigestAuth::from_config("understudy", &["sbc:s3cret".into()])
            .unwrap()
            .unwrap()
    }

    /// The Authorization a client computes (RFC 2617, qop=auth).
    fn answer(a: &DigestAuth, user: &str, password: &str, nonce: &str) -> String {
        let uri = "sip:bot@127.0.0.1:5060";
        let ha1 = md5_hex(&format!("{user}:understudy:{password}"));
        let ha2 = md5_hex(&format!("INVITE:{uri}"));
        let response = md5_hex(&format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
        let _ = a;
        format!(
            "Digest username=\"{user}\", realm=\"understudy\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c0ffee\""
        )
    }

    #[test]
    fn the_right_password_passes_and_everything_else_is_refused() {
        let a = auth();
        let now = 1_800_000_000;
        let nonce = a.nonce(now);
        let good = answer(&a, "sbc", "s3cret", &nonce);
        assert_eq!(a.check("INVITE", Some(&good), now + 10), Ok("sbc".into()));
        assert_eq!(a.check("INVITE", None, now), Err(Refused::Missing));
        assert_eq!(
            a.check("INVITE", Some(&answer(&a, "sbc", "guess", &nonce)), now),
            Err(Refused::Wrong(Some("sbc".into())))
        );
        assert_eq!(
            a.check("INVITE", Some(&answer(&a, "eve", "s3cret", &nonce)), now),
            Err(Refused::Wrong(Some("eve".into())))
        );
        // A nonce we did not make, and one made with another secret.
        let forged = format!("{now:x}.000000000000000000000000");
        assert!(matches!(
            a.check("INVITE", Some(&answer(&a, "sbc", "s3cret", &forged)), now),
            Err(Refused::Wrong(_))
        ));
        let other = auth().nonce(now);
        assert!(matches!(
            a.check("INVITE", Some(&answer(&a, "sbc", "s3cret", &other)), now),
            Err(Refused::Wrong(_))
        ));
        // Right, but old: stale, so the client retries on its own.
        assert_eq!(
            a.check("INVITE", Some(&good), now + NONCE_LIFETIME_S + 1),
            Err(Refused::Stale)
        );
        assert_eq!(
            a.check("INVITE", Some("Digest garbage"), now),
            Err(Refused::Wrong(None))
        );
        assert!(a.challenge(now, true).contains("stale=true"));
    }

    #[test]
    fn bad_entries_are_named() {
        assert!(DigestAuth::from_config("understudy", &[])
            .unwrap()
            .is_none());
        let e = DigestAuth::from_config("understudy", &["nopassword".into()]).unwrap_err();
        assert!(e.to_string().contains("sip.auth_users[0]"), "{e}");
        let e = DigestAuth::from_config("understudy", &["a:1".into(), "a:2".into()]).unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }
}

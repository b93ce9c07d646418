//! etcd's JWT tokens (`--auth-token jwt,pub-key=...,priv-key=...,
//! sign-method=...,ttl=...`): signed claims `username`, `revision` and `exp`,
//! checked by signature and expiry alone, so any member holding the public
//! key accepts them and nothing is kept per token.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ServerError;

/// etcd's default JWT lifetime.
const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// The claims etcd puts in its tokens.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    username: String,
    revision: u64,
    exp: u64,
}

/// Keys and lifetime of this member's JWTs.
pub(crate) struct JwtTokens {
    alg: Algorithm,
    /// Absent: this member verifies tokens but cannot sign them.
    signing: Option<EncodingKey>,
    verifying: DecodingKey,
    ttl: Duration,
}

impl std::fmt::Debug for JwtTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtTokens")
            .field("alg", &self.alg)
            .field("signing", &self.signing.is_some())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

fn bad(m: String) -> ServerError {
    ServerError::Config(format!("--auth-token: {m}"))
}

impl JwtTokens {
    /// From `--auth-token`: `None` for `simple`; keys are read here.
    pub(crate) fn from_flag(flag: &str) -> Result<Option<JwtTokens>, ServerError> {
        let mut parts = flag.split(',');
        match parts.next() {
            Some("simple") if flag == "simple" => return Ok(None),
            Some("jwt") => {}
            _ => return Err(bad(format!("{flag}: expected `simple` or `jwt,...`"))),
        }
        let (mut public, mut private, mut method, mut ttl) = (None, None, None, DEFAULT_TTL);
        for p in parts {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| bad(format!("{p}: expected key=value")))?;
            match k {
                "pub-key" => public = Some(v.to_string()),
                "priv-key" => private = Some(v.to_string()),
                "sign-method" => method = Some(v.to_string()),
                "ttl" => ttl = parse_ttl(v)?,
                _ => return Err(bad(format!("unknown option {k}"))),
            }
        }
        let method = method.ok_or_else(|| bad("jwt needs sign-method".into()))?;
        let alg: Algorithm = method
            .parse()
            .map_err(|_| bad(format!("unknown sign-method {method}")))?;
        let read =
            |path: &str| std::fs::read(path).map_err(|e| bad(format!("cannot read {path}: {e}")));
        let public = public.ok_or_else(|| bad("jwt needs pub-key".into()))?;
        let pem = read(&public)?;
        let verifying = match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => DecodingKey::from_rsa_pem(&pem),
            Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(&pem),
            Algorithm::EdDSA => DecodingKey::from_ed_pem(&pem),
            other => {
                return Err(bad(format!(
                    "sign-method {other:?} needs keys, not a secret"
                )))
            }
        }
        .map_err(|e| bad(format!("{public}: {e}")))?;
        let signing = match private {
            None => None,
            Some(path) => {
                let pem = read(&path)?;
                let key = match alg {
                    Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
                    Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
                    _ => EncodingKey::from_rsa_pem(&pem),
                };
                Some(key.map_err(|e| bad(format!("{path}: {e}")))?)
            }
        };
        Ok(Some(JwtTokens {
            alg,
            signing,
            verifying,
            ttl,
        }))
    }

    /// A token for `user`, valid for the TTL from now.
    pub(crate) fn sign(&self, user: &str, revision: u64) -> Result<String, ServerError> {
        let key = self.signing.as_ref().ok_or_else(|| {
            ServerError::Internal("this member has no priv-key to sign tokens".into())
        })?;
        let claims = Claims {
            username: user.to_string(),
            revision,
            exp: (now_secs() + self.ttl).as_secs(),
        };
        jsonwebtoken::encode(&Header::new(self.alg), &claims, key)
            .map_err(|e| ServerError::Internal(format!("signing a token: {e}")))
    }

    /// The user of a token with a good signature that has not expired.
    pub(crate) fn user_of(&self, token: &str) -> Option<String> {
        let mut v = Validation::new(self.alg);
        v.leeway = 0;
        v.set_required_spec_claims(&["exp"]);
        jsonwebtoken::decode::<Claims>(token, &self.verifying, &v)
            .ok()
            .map(|d| d.claims.username)
    }
}

fn now_secs() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// etcd writes the TTL as a Go duration (`5m`, `30s`, `1h`).
fn parse_ttl(v: &str) -> Result<Duration, ServerError> {
    let (n, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = n.parse().map_err(|_| bad(format!("ttl={v}")))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad(format!("ttl={v}: use s, m or h"))),
    };
    if secs == 0 {
        return Err(bad("ttl must be positive".into()));
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(dir: &std::path::Path) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap(); // ECDSA P-256
        let private = dir.join("priv.pem");
        let public = dir.join("pub.pem");
        std::fs::write(&private, key.serialize_pem()).unwrap();
        std::fs::write(&public, key.public_key_pem()).unwrap();
        (private.display().to_string(), public.display().to_string())
    }

    #[test]
    fn tokens_verify_only_with_a_good_signature_and_before_they_expire() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = keys(dir.path());
        let flag = format!("jwt,pub-key={public},priv-key={private},sign-method=ES256,ttl=1m");
        let jwt = JwtTokens::from_flag(&flag).unwrap().unwrap();
        let t = jwt.sign("alice", 3).unwrap();
        assert_eq!(jwt.user_of(&t).as_deref(), Some("alice"));
        // Tampered, signed by another key, expired: refused.
        let mut bad = t.clone();
        bad.pop();
        assert_eq!(jwt.user_of(&bad), None);
        let other_dir = tempfile::tempdir().unwrap();
        let (other_private, _) = keys(other_dir.path());
        let forger = JwtTokens::from_flag(&format!(
            "jwt,pub-key={public},priv-key={other_private},sign-method=ES256"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(jwt.user_of(&forger.sign("root", 3).unwrap()), None);
        let claims = Claims {
            username: "alice".into(),
            revision: 3,
            exp: now_secs().as_secs() - 10,
        };
        let key = jwt.signing.as_ref().unwrap();
        let expired = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, key).unwrap();
        assert_eq!(jwt.user_of(&expired), None);
        // A member with the public key only verifies.
        let verifier = JwtTokens::from_flag(&format!("jwt,pub-key={public},sign-method=ES256"))
            .unwrap()
            .unwrap();
        assert_eq!(verifier.user_of(&t).as_deref(), Some("alice"));
        assert!(verifier.sign("alice", 3).is_err());
    }

    #[test]
    fn the_flag_is_parsed_as_etcd_writes_it() {
        assert!(JwtTokens::from_flag("simple").unwrap().is_none());
        for bad in [
            "",
            "simple,ttl=1m",
            "jwt",
            "jwt,sign-method=ES256",
            "jwt,pub-key=/nope.pem,sign-method=ES256",
            "jwt,pub-key=x,sign-method=XX999",
            "jwt,pub-key=x,sign-method=HS256",
            "jwt,what=1",
        ] {
            assert!(JwtTokens::from_flag(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_ttl("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_ttl("30s").unwrap(), Duration::from_secs(30));
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("5d").is_err());
    }
}

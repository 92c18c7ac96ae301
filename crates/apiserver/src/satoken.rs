//! Service-account tokens: the JWTs the TokenRequest API (`serviceaccounts/<name>/token`)
//! issues and the bearer authenticator accepts, signed with the cluster's service-account key
//! (ES256, the key `rkube server` generates on first start).
//!
//! Claims follow upstream's bound tokens: `iss`, `sub` = `system:serviceaccount:<ns>:<name>`,
//! `aud`, `exp`/`iat`/`nbf`, and the private `kubernetes.io` claim naming the namespace, the
//! service account and (when bound) the pod.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::authn::UserInfo;

/// The issuer upstream uses by default (`--service-account-issuer`).
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// What a token is issued for.
#[derive(Debug, Clone, Default)]
pub struct TokenSubject {
    /// Namespace of the service account.
    pub namespace: String,
    /// Service account name.
    pub name: String,
    /// Service account UID.
    pub uid: String,
    /// Audiences (`spec.audiences`; the issuer when empty).
    pub audiences: Vec<String>,
    /// Lifetime in seconds.
    pub expiration_seconds: i64,
    /// The pod the token is bound to (`spec.boundObjectRef`), as (name, uid).
    pub pod: Option<(String, String)>,
}

/// Signs and verifies service-account tokens.
pub struct TokenIssuer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenIssuer")
    }
}

impl TokenIssuer {
    /// An issuer from the PEM (PKCS#8) service-account key.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        let der = rustls_pemfile::private_key(&mut pem.as_bytes())
            .map_err(|e| format!("service-account key: {e}"))?
            .ok_or("service-account key: no private key in PEM")?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der.secret_der(),
            &rng,
        )
        .map_err(|e| format!("service-account key is not an ECDSA P-256 key: {e}"))?;
        Ok(TokenIssuer { key, rng })
    }

    /// A signed token and its expiry (seconds since the epoch).
    pub fn issue(&self, subject: &TokenSubject) -> Result<(String, i64), String> {
        let now = jiff::Timestamp::now().as_second();
        let exp = now + subject.expiration_seconds;
        let audiences = if subject.audiences.is_empty() {
            vec![ISSUER.to_string()]
        } else {
            subject.audiences.clone()
        };
        let mut private = json!({
            "namespace": subject.namespace,
            "serviceaccount": {"name": subject.name, "uid": subject.uid},
        });
        if let Some((name, uid)) = &subject.pod {
            private["pod"] = json!({"name": name, "uid": uid});
        }
        let claims = json!({
            "aud": audiences,
            "exp": exp,
            "iat": now,
            "nbf": now,
            "iss": ISSUER,
            "sub": format!("system:serviceaccount:{}:{}", subject.namespace, subject.name),
            "kubernetes.io": private,
        });
        let header = json!({"alg": "ES256", "typ": "JWT"});
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| "signing the token failed".to_string())?;
        Ok((format!("{signing_input}.{}", B64.encode(sig.as_ref())), exp))
    }

    /// The service account a token names, if this issuer signed it and it has not expired.
    pub fn verify(&self, token: &str) -> Option<UserInfo> {
        let mut parts = token.split('.');
        let (header, claims, sig) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let sig = B64.decode(sig).ok()?;
        let public = signature::UnparsedPublicKey::new(
            &signature::ECDSA_P256_SHA256_FIXED,
            self.key.public_key().as_ref(),
        );
        public
            .verify(format!("{header}.{claims}").as_bytes(), &sig)
            .ok()?;
        let claims: Value = serde_json::from_slice(&B64.decode(claims).ok()?).ok()?;
        let now = jiff::Timestamp::now().as_second();
        if claims["exp"].as_i64().is_some_and(|exp| exp < now) || claims["iss"] != ISSUER {
            return None;
        }
        let sub = claims["sub"].as_str()?;
        let ns = sub
            .strip_prefix("system:serviceaccount:")?
            .split(':')
            .next()?;
        Some(UserInfo {
            name: sub.to_string(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        let pem = rcgen::KeyPair::generate().unwrap().serialize_pem();
        TokenIssuer::from_pem(&pem).unwrap()
    }

    #[test]
    fn issued_tokens_verify_as_the_service_account() {
        let i = issuer();
        let (token, _) = i
            .issue(&TokenSubject {
                namespace: "default".into(),
                name: "builder".into(),
                expiration_seconds: 3600,
                ..Default::default()
            })
            .unwrap();
        let user = i.verify(&token).unwrap();
        assert_eq!(user.name, "system:serviceaccount:default:builder");
        assert!(
            user.groups
                .contains(&"system:serviceaccounts:default".to_string())
        );
    }

    #[test]
    fn tampered_expired_and_foreign_tokens_are_refused() {
        let i = issuer();
        let subject = TokenSubject {
            namespace: "default".into(),
            name: "a".into(),
            expiration_seconds: 3600,
            ..Default::default()
        };
        let (token, _) = i.issue(&subject).unwrap();
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(r#"{"sub":"system:serviceaccount:kube-system:admin","iss":"https://kubernetes.default.svc.cluster.local"}"#);
        parts[1] = &forged;
        assert!(i.verify(&parts.join(".")).is_none());
        assert!(issuer().verify(&token).is_none());
        let (old, _) = i
            .issue(&TokenSubject {
                expiration_seconds: -10,
                ..subject
            })
            .unwrap();
        assert!(i.verify(&old).is_none());
    }
}

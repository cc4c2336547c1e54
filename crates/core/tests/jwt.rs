//! JWT verification against a JWKS this test publishes itself (keys in
//! `fixtures/jwt`, made for these tests only): what is accepted, and each
//! way a token is refused.

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rag_core::jwt::{JwksSource, JwtError, JwtSettings, JwtVerifier};
use rag_core::{Role, Scope, Tenant};
use serde_json::{Value, json};

const SIGNER: &[u8] = include_bytes!("fixtures/jwt/signer.test-only.pem");
const OTHER: &[u8] = include_bytes!("fixtures/jwt/other.test-only.pem");
const ISSUER: &str = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_test";
const AUDIENCE: &str = "rag-agent-client";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({
        "sub": "user-1", "iss": ISSUER, "aud": AUDIENCE, "exp": now() + 600,
        "custom:tenant": "team-a", "cognito:groups": ["staff", "rag-writer"],
    })
}

fn sign(claims: &Value, pem: &[u8], kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(pem).unwrap()).unwrap()
}

fn verifier(jwks_file: &std::path::Path) -> JwtVerifier {
    JwtVerifier::new(
        JwtSettings {
            refresh_at_most_every: Duration::ZERO,
            ..JwtSettings::new(ISSUER, AUDIENCE)
        },
        JwksSource::File(jwks_file.to_path_buf()),
    )
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

#[tokio::test]
async fn a_valid_token_names_its_tenant_and_highest_role() {
    let jwt = verifier(&fixture("jwks.json"));
    jwt.load().await.unwrap();
    let principal = jwt
        .verify(&sign(&claims(), SIGNER, "test-signer"), None)
        .await
        .unwrap();
    assert_eq!(
        principal.scope,
        Scope::Tenant(Tenant::new("team-a").unwrap())
    );
    assert_eq!(principal.role, Role::Writer);
    assert_eq!(principal.id, "sub:user-1");

    let mut admin = claims();
    admin["cognito:groups"] = json!(["rag-reader", "rag-admin"]);
    admin["custom:tenant"] = json!("*");
    let operator = jwt
        .verify(
            &sign(&admin, SIGNER, "test-signer"),
            Some(Tenant::new("team-b").unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(operator.role, Role::Admin);
    assert_eq!(operator.tenant(), Some(&Tenant::new("team-b").unwrap()));
}

#[tokio::test]
async fn forged_foreign_expired_and_unsigned_tokens_are_refused() {
    let jwt = verifier(&fixture("jwks.json"));
    jwt.load().await.unwrap();
    let refused = |token: String| {
        let jwt = &jwt;
        async move { jwt.verify(&token, None).await.unwrap_err() }
    };
    // Signed by a key the provider does not publish, under its kid or another.
    assert!(matches!(
        refused(sign(&claims(), OTHER, "test-signer")).await,
        JwtError::Invalid(_)
    ));
    assert_eq!(
        refused(sign(&claims(), OTHER, "test-other")).await,
        JwtError::UnknownKey
    );
    for (field, value) in [
        ("iss", json!("https://evil.example")),
        ("aud", json!("another-app")),
    ] {
        let mut c = claims();
        c[field] = value;
        assert!(
            matches!(
                refused(sign(&c, SIGNER, "test-signer")).await,
                JwtError::Invalid(_)
            ),
            "{field}"
        );
    }
    let mut expired = claims();
    expired["exp"] = json!(now() - 120);
    assert_eq!(
        refused(sign(&expired, SIGNER, "test-signer")).await,
        JwtError::Expired
    );
    // Within the leeway an expiry a few seconds ago still passes.
    let mut just = claims();
    just["exp"] = json!(now() - 5);
    assert!(
        jwt.verify(&sign(&just, SIGNER, "test-signer"), None)
            .await
            .is_ok()
    );

    // `alg: none`, and HMAC signed with a secret anyone could choose.
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT", "kid": "test-signer"})),
        b64(&claims())
    );
    assert_eq!(refused(none).await, JwtError::Malformed);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("test-signer".into());
    let hmac = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(b"the public modulus, say"),
    )
    .unwrap();
    assert_eq!(refused(hmac).await, JwtError::Algorithm);
    assert_eq!(refused("not.a.jwt".into()).await, JwtError::Malformed);

    // A real identity without a tenant or a rag-* group is forbidden.
    let mut no_tenant = claims();
    no_tenant.as_object_mut().unwrap().remove("custom:tenant");
    assert!(matches!(
        refused(sign(&no_tenant, SIGNER, "test-signer")).await,
        JwtError::Forbidden(_)
    ));
    let mut no_role = claims();
    no_role["cognito:groups"] = json!(["staff"]);
    assert!(matches!(
        refused(sign(&no_role, SIGNER, "test-signer")).await,
        JwtError::Forbidden(_)
    ));
}

/// Providers rotate keys by publishing new ones: a token with an unknown
/// kid makes the verifier read the JWKS again and then passes.
#[tokio::test]
async fn an_unknown_kid_reads_the_jwks_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::copy(fixture("jwks.json"), &path).unwrap();
    let jwt = verifier(&path);
    jwt.load().await.unwrap();
    let rotated = sign(&claims(), OTHER, "test-other");
    assert_eq!(
        jwt.verify(&rotated, None).await.unwrap_err(),
        JwtError::UnknownKey
    );
    std::fs::copy(fixture("jwks_rotated.json"), &path).unwrap();
    assert_eq!(jwt.verify(&rotated, None).await.unwrap().role, Role::Writer);
}

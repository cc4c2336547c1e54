//! `BEDROCK_ROUTES`: Bedrock per use case, each reached through its own
//! role, usually in another account (a shared model account per group of
//! use cases). Parsed and checked at start-up; a request's service is
//! built on first use per (use case, model) and kept.
//!
//! ```json
//! {"use-case-a": {"role_arn": "arn:aws:iam::111122223333:role/ACME-GenAI-UseCaseA-BedrockInvokeRole",
//!                 "region": "us-east-1", "llm_model_id": "anthropic.claude-3-haiku-20240307-v1:0",
//!                 "allowed_models": ["anthropic.claude-3-haiku-20240307-v1:0"], "web_identity": false}}
//! ```

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use aws_config::SdkConfig;
use clap::Args;
use rag_aws::{BedrockChatModel, RoleCredentials, RoleSource, RoleSpec, session_name};
use rag_core::routing::{RouteError, UseCaseServices, valid_use_case};
use rag_core::{Embedder, RagService};
use serde::Deserialize;

use crate::config::AwsArgs;

/// Bedrock per use case.
#[derive(Debug, Args)]
#[command(next_help_heading = "Bedrock per use case")]
pub struct RouteArgs {
    /// Use case to Bedrock access, as inline JSON or a file: `{"<use case>":
    /// {"role_arn", "region", "llm_model_id"?, "embedding_model_id"?,
    /// "allowed_models"?: [..], "web_identity"?: bool, "external_id"?}}`.
    /// Every answer then runs under its request's use case (x-use-case-id,
    /// the token's use_case claim, or the tenant's configured one).
    #[arg(long, env = "BEDROCK_ROUTES")]
    pub bedrock_routes: Option<String>,
    /// Lifetime asked of STS for a use case's credentials (900 to 43200).
    #[arg(long, env = "BEDROCK_ROLE_SESSION_SECONDS", default_value_t = 3600)]
    pub bedrock_role_session_seconds: u64,
    /// Credentials this close to expiry are refreshed in the background.
    #[arg(long, env = "BEDROCK_CREDENTIALS_REFRESH_SECS", default_value_t = 300)]
    pub bedrock_credentials_refresh_secs: u64,
    /// The OIDC token routes with `"web_identity": true` assume their role
    /// with (AssumeRoleWithWebIdentity); read again at every refresh.
    #[arg(long, env = "AWS_WEB_IDENTITY_TOKEN_FILE")]
    pub web_identity_token_file: Option<PathBuf>,
    #[arg(long, env = "AWS_ENDPOINT_URL_STS")]
    pub sts_endpoint: Option<String>,
}

/// One use case's route as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub role_arn: String,
    pub region: String,
    #[serde(default)]
    pub embedding_model_id: Option<String>,
    #[serde(default)]
    pub llm_model_id: Option<String>,
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub web_identity: bool,
    /// For AssumeRole into a role whose trust policy asks for one.
    #[serde(default)]
    pub external_id: Option<String>,
}

/// Whether `arn` names an IAM role: `arn:<partition>:iam::<12 digits>:role/<path and name>`.
fn is_role_arn(arn: &str) -> bool {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    partition.starts_with("aws")
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && resource.strip_prefix("role/").is_some_and(|name| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-/".contains(&b))
        })
}

/// The routes in `text`, checked against the rest of the configuration.
pub fn parse(
    text: &str,
    aws: &AwsArgs,
    routes: &RouteArgs,
) -> anyhow::Result<BTreeMap<String, RouteConfig>> {
    let parsed: BTreeMap<String, RouteConfig> = serde_json::from_str(text).context(
        "BEDROCK_ROUTES must be a JSON object of use case to {\"role_arn\", \"region\", ...}",
    )?;
    if parsed.is_empty() {
        bail!("BEDROCK_ROUTES names no use case");
    }
    for (use_case, route) in &parsed {
        valid_use_case(use_case)
            .map_err(|e| anyhow::anyhow!("BEDROCK_ROUTES {use_case:?}: {e}"))?;
        if !is_role_arn(&route.role_arn) {
            bail!(
                "BEDROCK_ROUTES {use_case}: role_arn is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"
            );
        }
        if route.region.is_empty()
            || !route
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            bail!(
                "BEDROCK_ROUTES {use_case}: region {:?} is not an AWS region",
                route.region
            );
        }
        if route.web_identity && routes.web_identity_token_file.is_none() {
            bail!(
                "BEDROCK_ROUTES {use_case}: web_identity needs AWS_WEB_IDENTITY_TOKEN_FILE (the OIDC token to assume the role with)"
            );
        }
        if route.web_identity && route.external_id.is_some() {
            bail!(
                "BEDROCK_ROUTES {use_case}: external_id applies to AssumeRole, not to web_identity"
            );
        }
        if let Some(model) = &route.embedding_model_id
            && model != &aws.bedrock_embedding_model
        {
            bail!(
                "BEDROCK_ROUTES {use_case}: embedding_model_id {model} differs from BEDROCK_EMBEDDING_MODEL_ID {}: one vector index holds one model's vectors, so every use case embeds with that model (through its own role)",
                aws.bedrock_embedding_model
            );
        }
        let llm = route
            .llm_model_id
            .as_deref()
            .unwrap_or(&aws.bedrock_llm_model);
        if let Some(allowed) = &route.allowed_models
            && !allowed.iter().any(|m| m == llm)
        {
            bail!("BEDROCK_ROUTES {use_case}: its llm_model_id {llm} is not in its allowed_models");
        }
    }
    let seconds = routes.bedrock_role_session_seconds;
    if !(900..=43_200).contains(&seconds) {
        bail!(
            "BEDROCK_ROLE_SESSION_SECONDS must be between 900 and 43200 (STS's limits), not {seconds}"
        );
    }
    if routes.bedrock_credentials_refresh_secs >= seconds {
        bail!("BEDROCK_CREDENTIALS_REFRESH_SECS must be shorter than BEDROCK_ROLE_SESSION_SECONDS");
    }
    Ok(parsed)
}

/// A use case's models as wired.
struct Route {
    client: aws_sdk_bedrockruntime::Client,
    llm_model_id: String,
    allowed_models: Vec<String>,
    embedder: Option<Arc<dyn Embedder>>,
}

/// The services of every configured use case.
pub struct RoutedServices {
    base: Arc<RagService>,
    routes: BTreeMap<String, Route>,
    built: Mutex<HashMap<(String, String), Arc<RagService>>>,
}

/// What the routes are built with.
pub struct RouteWiring<'a> {
    pub sdk: &'a SdkConfig,
    pub aws: &'a AwsArgs,
    pub routes: &'a RouteArgs,
    /// Whether answers' questions are embedded by Bedrock (Titan), so they
    /// go through each use case's role too; and at what dimension.
    pub bedrock_embedding_dimension: Option<usize>,
}

impl RoutedServices {
    pub fn build(
        base: Arc<RagService>,
        configs: BTreeMap<String, RouteConfig>,
        wiring: &RouteWiring<'_>,
    ) -> anyhow::Result<Self> {
        let sts = crate::aws::sts_client(wiring.sdk, wiring.routes.sts_endpoint.as_deref());
        // One credentials cache per role and one client per role and
        // region, whichever use cases share them.
        let mut credentials: HashMap<(String, bool, Option<String>), RoleCredentials> =
            HashMap::new();
        let mut clients: HashMap<
            (String, bool, Option<String>, String),
            aws_sdk_bedrockruntime::Client,
        > = HashMap::new();
        let mut routes = BTreeMap::new();
        for (use_case, config) in configs {
            let role_key = (
                config.role_arn.clone(),
                config.web_identity,
                config.external_id.clone(),
            );
            let role = credentials
                .entry(role_key.clone())
                .or_insert_with(|| {
                    let source =
                        match (&config.web_identity, &wiring.routes.web_identity_token_file) {
                            (true, Some(file)) => RoleSource::WebIdentityTokenFile(file.clone()),
                            _ => RoleSource::AssumeRole {
                                external_id: config.external_id.clone(),
                            },
                        };
                    RoleCredentials::new(
                        sts.clone(),
                        RoleSpec {
                            role_arn: config.role_arn.clone(),
                            session_name: session_name(&["rag-agent", &use_case]),
                            source,
                            duration: Duration::from_secs(
                                wiring.routes.bedrock_role_session_seconds,
                            ),
                            refresh_margin: Duration::from_secs(
                                wiring.routes.bedrock_credentials_refresh_secs,
                            ),
                        },
                    )
                })
                .clone();
            let (role_arn, web_identity, external_id) = role_key;
            let client = clients
                .entry((role_arn, web_identity, external_id, config.region.clone()))
                .or_insert_with(|| {
                    crate::aws::routed_bedrock_client(wiring.sdk, wiring.aws, &config.region, role)
                })
                .clone();
            let llm_model_id = config
                .llm_model_id
                .clone()
                .unwrap_or_else(|| wiring.aws.bedrock_llm_model.clone());
            let allowed_models = config
                .allowed_models
                .clone()
                .unwrap_or_else(|| vec![llm_model_id.clone()]);
            let embedder = match wiring.bedrock_embedding_dimension {
                Some(dimension) => Some(crate::aws::embedder_on(
                    client.clone(),
                    wiring.aws,
                    dimension,
                )?),
                None => None,
            };
            routes.insert(
                use_case,
                Route {
                    client,
                    llm_model_id,
                    allowed_models,
                    embedder,
                },
            );
        }
        Ok(Self {
            base,
            routes,
            built: Mutex::new(HashMap::new()),
        })
    }
}

impl UseCaseServices for RoutedServices {
    fn service(&self, use_case: &str, model: Option<&str>) -> Result<Arc<RagService>, RouteError> {
        let route = self
            .routes
            .get(use_case)
            .ok_or_else(|| RouteError::UseCaseNotAllowed(use_case.to_string()))?;
        let model = model.unwrap_or(&route.llm_model_id);
        if !route.allowed_models.iter().any(|m| m == model) {
            return Err(RouteError::ModelNotAllowed {
                use_case: use_case.to_string(),
                model: model.to_string(),
            });
        }
        let key = (use_case.to_string(), model.to_string());
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        let service = built.entry(key).or_insert_with(|| {
            let chat = Arc::new(BedrockChatModel::new(route.client.clone(), model));
            let embedder = route
                .embedder
                .clone()
                .or_else(|| self.base.retriever().embedder().cloned());
            self.base.routed(chat, embedder)
        });
        Ok(service.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_checked() {
        assert!(is_role_arn(
            "arn:aws:iam::111122223333:role/ACME-GenAI-UseCaseA-BedrockInvokeRole"
        ));
        assert!(is_role_arn(
            "arn:aws-us-gov:iam::111122223333:role/path/Name"
        ));
        for bad in [
            "arn:aws:iam::11112222333:role/Short",
            "arn:aws:iam::111122223333:user/Someone",
            "arn:aws:sts::111122223333:role/Name",
            "arn:aws:iam::111122223333:role/",
            "role/Name",
        ] {
            assert!(!is_role_arn(bad), "{bad}");
        }
    }
}

//! `scripts/check_names.py`, which CI runs over `infra/`: it passes there,
//! and fails on a template that names a role or a policy against the
//! convention, saying which.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn check_names(args: &[&Path]) -> (bool, String) {
    let python = std::env::var("RAG_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = Command::new(python)
        .arg(repo().join("scripts/check_names.py"))
        .args(args)
        .output()
        .expect("python with cfn-lint (RAG_TEST_PYTHON)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains("Traceback"), "{text}");
    (output.status.success(), text)
}

#[test]
fn infra_follows_the_naming_convention() {
    let (passed, text) = check_names(&[]);
    assert!(passed, "{text}");
    // Both multi-account templates' names were read.
    let count: u32 = text
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(count >= 8, "{text}");
}

#[test]
fn a_misnamed_role_or_policy_fails() {
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("bad.yaml");
    std::fs::write(
        &template,
        r#"AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  OrgPrefix:
    Type: String
    Default: ACME
Resources:
  GoodRole:
    Type: AWS::IAM::Role
    Properties:
      RoleName: !Sub "${OrgPrefix}-GenAI-UseCaseA-BedrockInvokeRole"
      AssumeRolePolicyDocument: {}
  BadRole:
    Type: AWS::IAM::Role
    Properties:
      RoleName: !Sub "${OrgPrefix}-genai-bedrock-role"
      AssumeRolePolicyDocument: {}
  BadPolicy:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      ManagedPolicyName: ACME-GenAI-UseCaseA-Anthropic-Policy
      PolicyDocument: {}
"#,
    )
    .unwrap();
    let (passed, text) = check_names(&[&template]);
    assert!(!passed, "{text}");
    assert!(
        text.contains("BadRole") && text.contains("ACME-genai-bedrock-role"),
        "{text}"
    );
    assert!(text.contains("BadPolicy"), "{text}");
    assert!(!text.contains("GoodRole"), "{text}");
}

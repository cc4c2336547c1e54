//! Backend combinations that cannot work stop start-up with a message that
//! names the variable to change, before anything listens.

use std::process::{Command, Stdio};

fn start_and_fail(env: &[(&str, &str)]) -> String {
    let data = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_rag-agent"));
    command
        .args(["serve", "--addr", "127.0.0.1:0", "--offline", "--data-dir"])
        .arg(data.path())
        .env("RUST_LOG", "error")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let output = command.output().expect("run rag-agent");
    assert!(
        !output.status.success(),
        "started with {env:?}: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Environment for one start, and the phrases its error must contain.
type Env<'a> = &'a [(&'a str, &'a str)];
type Expected<'a> = &'a [&'a str];

#[test]
fn impossible_combinations_name_the_variable() {
    let cases: &[(Env, Expected)] = &[
        (
            &[(
                "INGEST_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/1/q",
            )],
            &["INGEST_QUEUE_URL", "ingest-queue.sqlite3"],
        ),
        (
            &[(
                "INGEST_DEAD_LETTER_QUEUE_URL",
                "https://sqs.us-east-1.amazonaws.com/1/dlq",
            )],
            &["INGEST_DEAD_LETTER_QUEUE_URL needs INGEST_QUEUE_URL"],
        ),
        (
            &[("METADATA_BACKEND", "dynamodb")],
            &["DYNAMODB_TABLE_NAME"],
        ),
        (&[("DOCUMENT_BACKEND", "s3")], &["S3_BUCKET_NAME"]),
        (
            &[(
                "BEDROCK_ROUTES",
                r#"{"a": {"role_arn": "arn:aws:iam::111122223333:role/R", "region": "us-east-1"}}"#,
            )],
            &["BEDROCK_ROUTES", "LLM_PROVIDER=bedrock"],
        ),
        (
            &[
                ("LLM_PROVIDER", "bedrock"),
                (
                    "BEDROCK_ROUTES",
                    r#"{"a": {"role_arn": "arn:aws:iam::1111:role/R", "region": "us-east-1"}}"#,
                ),
            ],
            &["BEDROCK_ROUTES a", "role_arn"],
        ),
        (
            &[
                ("LLM_PROVIDER", "bedrock"),
                (
                    "BEDROCK_ROUTES",
                    r#"{"a": {"role_arn": "arn:aws:iam::111122223333:role/R", "region": "us-east-1", "web_identity": true}}"#,
                ),
            ],
            &["AWS_WEB_IDENTITY_TOKEN_FILE"],
        ),
        (
            &[
                ("LLM_PROVIDER", "bedrock"),
                ("EMBEDDING_PROVIDER", "bedrock"),
                (
                    "BEDROCK_ROUTES",
                    r#"{"a": {"role_arn": "arn:aws:iam::111122223333:role/R", "region": "us-east-1", "embedding_model_id": "amazon.titan-embed-text-v1"}}"#,
                ),
            ],
            &[
                "embedding_model_id",
                "one vector index holds one model's vectors",
            ],
        ),
        (
            &[
                ("LLM_PROVIDER", "bedrock"),
                (
                    "BEDROCK_ROUTES",
                    r#"{"a": {"role_arn": "arn:aws:iam::111122223333:role/R", "region": "us-east-1", "allowed_models": ["m"]}}"#,
                ),
            ],
            &["not in its allowed_models"],
        ),
        (
            &[("VECTOR_BACKEND", "s3vectors")],
            &["S3_VECTOR_BUCKET_NAME"],
        ),
        (
            &[
                ("METADATA_BACKEND", "dynamodb"),
                ("DYNAMODB_TABLE_NAME", "t"),
                ("SEARCH_MODE", "lexical"),
            ],
            &["SEARCH_MODE", "METADATA_BACKEND=sqlite"],
        ),
        (
            &[
                ("EMBEDDING_PROVIDER", "bedrock"),
                ("VECTOR_DIMENSION", "384"),
            ],
            &["VECTOR_DIMENSION=384", "amazon.titan-embed-text-v2:0"],
        ),
        (
            &[
                ("EMBEDDING_PROVIDER", "bedrock"),
                ("BEDROCK_EMBEDDING_MODEL_ID", "cohere.embed-english-v3"),
            ],
            &["BEDROCK_EMBEDDING_MODEL_ID"],
        ),
        (
            &[
                ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"),
                ("AWS_LAMBDA_FUNCTION_NAME", "f"),
                ("RAG_AGENT_AUTH", "api_key"),
            ],
            &[
                "METADATA_BACKEND=sqlite cannot run on AWS Lambda",
                "METADATA_BACKEND=dynamodb",
            ],
        ),
        (
            &[("RERANK_PROVIDER", "llm")],
            &["RERANK_PROVIDER=llm", "LLM_PROVIDER=bedrock or openai"],
        ),
        (&[("RERANK_PROVIDER", "http")], &["RERANK_URL"]),
        (
            &[
                ("EMBEDDING_PROVIDER", "openai"),
                ("OPENAI_EMBEDDING_BASE_URL", "http://127.0.0.1:9/v1"),
            ],
            &["EMBEDDING_PROVIDER=openai", "OPENAI_EMBEDDING_BASE_URL"],
        ),
        (
            &[
                ("RERANK_PROVIDER", "http"),
                ("RERANK_URL", "http://127.0.0.1:9/rerank"),
            ],
            &["RERANK_MODEL"],
        ),
        (
            &[
                ("RERANK_PROVIDER", "http"),
                ("RERANK_URL", "http://127.0.0.1:9/rerank"),
                ("RERANK_MODEL", "m"),
                ("RERANK_CANDIDATES", "0"),
            ],
            &["RERANK_CANDIDATES must be between 1 and 100"],
        ),
        (
            &[
                ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"),
                ("AWS_LAMBDA_FUNCTION_NAME", "f"),
            ],
            &[
                "RAG_AGENT_AUTH=none is refused under Lambda",
                "RAG_AGENT_AUTH=api_key",
                "rag-agent keys create",
            ],
        ),
    ];
    for (env, expected) in cases {
        let stderr = start_and_fail(env);
        for needle in *expected {
            assert!(
                stderr.contains(needle),
                "{env:?}: {needle:?} not in {stderr}"
            );
        }
    }
}

/// Without credentials a server listens on loopback only: `--addr
/// 0.0.0.0:...` refuses to start and says what to set.
#[test]
fn serving_everyone_without_authentication_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_rag-agent"))
        .args(["serve", "--addr", "0.0.0.0:0", "--offline", "--data-dir"])
        .arg(data.path())
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("run rag-agent");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in [
        "without authentication",
        "RAG_AGENT_AUTH=api_key",
        "--allow-unauthenticated",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr}");
    }
}

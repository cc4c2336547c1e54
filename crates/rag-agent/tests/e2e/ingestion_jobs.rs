//! Ingestion jobs through the real binary: a directory under the allowed
//! roots on the embedded default, and a 1,000-object S3 prefix on the AWS
//! set (moto's S3 as the source), each synced, changed and synced again
//! with exact counts; and the sources a deployment refuses. The fan-out
//! through SQS under Lambda is in `sqs_worker.rs`.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};

use crate::support::*;

/// Starts a job and follows it until it ends.
pub(crate) async fn run_job(server: &Server, request: Value) -> Value {
    let (status, job) = post_json(&server.at("/ingestion-jobs"), &request).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["status"], "QUEUED", "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    loop {
        let (status, job) = get_json(&server.at(&format!("/ingestion-jobs/{id}"))).await;
        assert_eq!(status, 200, "{job}");
        if job["status"] == "COMPLETED" || job["status"] == "FAILED" {
            return job;
        }
        // Generous: on moto every item costs a dozen slow calls, and CI
        // runs other suites beside this one.
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "the job did not end: {job}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn counts(added: u64, updated: u64, deleted: u64, unchanged: u64, scanned: u64) -> Value {
    json!({"scanned": scanned, "added": added, "updated": updated, "deleted": deleted,
           "unchanged": unchanged, "failed": 0})
}

/// The sources a lexical (or, on AWS, dense) search finds for `words`.
async fn sources_for(server: &Server, stack: &Stack, words: &str) -> Vec<String> {
    let (status, answer) = post_json(
        &server.at("/query"),
        &json!({"query": words, "mode": stack.default_mode(), "top_k": 3}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    answer["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["snippet"].as_str().unwrap_or_default().contains(words))
        .map(|s| s["source"].as_str().unwrap().to_string())
        .collect()
}

fn write(root: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(root.join(name).parent().unwrap()).unwrap();
    std::fs::write(root.join(name), text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_job_adds_updates_and_deletes_embedded() {
    let allowed = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(allowed.path())
        .unwrap()
        .join("handbook");
    write(
        &root,
        "quays.md",
        "# Quays\n\nThe north quay is dredged to twelve metres.\n",
    );
    write(
        &root,
        "keepers/ines.md",
        "# Ines\n\nInes Duarte keeps the lighthouse log.\n",
    );
    write(
        &root,
        "tides.md",
        "# Tides\n\nSpring tides flood the marshalling yard.\n",
    );
    write(
        &root,
        "drafts/wip.md",
        "# Draft\n\nUnfinished notes on the ferry timetable.\n",
    );
    let data = tempfile::tempdir().unwrap();
    let roots = allowed.path().display().to_string();
    let stack = Stack::embedded();
    let server = Server::start(data.path(), &stack, &[("RAG_AGENT_SYNC_ROOTS", &roots)]);
    let request = json!({"source": format!("file://{}", root.display()), "exclude": ["drafts/**"]});

    let first = run_job(&server, request.clone()).await;
    assert_eq!(first["status"], "COMPLETED", "{first}");
    assert_eq!(first["counts"], counts(3, 0, 0, 0, 3), "{first}");
    assert!(first["finished_at"].is_string() && first["started_at"].is_string());
    let again = run_job(&server, request.clone()).await;
    assert_eq!(again["counts"], counts(0, 0, 0, 3, 3), "{again}");

    write(
        &root,
        "keepers/ines.md",
        "# Ines\n\nInes Duarte now winds the foghorn clockwork.\n",
    );
    std::fs::remove_file(root.join("tides.md")).unwrap();
    write(
        &root,
        "berths.md",
        "# Berths\n\nBerth seven takes the grain barges.\n",
    );
    let third = run_job(&server, request.clone()).await;
    assert_eq!(third["counts"], counts(1, 1, 1, 1, 3), "{third}");
    let ines = format!("file://{}", root.join("keepers/ines.md").display());
    assert_eq!(
        sources_for(&server, &stack, "foghorn clockwork").await,
        [ines]
    );
    assert!(
        sources_for(&server, &stack, "lighthouse log")
            .await
            .is_empty()
    );
    assert!(
        sources_for(&server, &stack, "marshalling yard")
            .await
            .is_empty()
    );
    assert!(
        sources_for(&server, &stack, "ferry timetable")
            .await
            .is_empty()
    );

    // Newest first.
    let (status, listed) = get_json(&server.at("/ingestion-jobs?limit=2")).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["items"][0]["id"], third["id"]);
    assert_eq!(listed["items"].as_array().unwrap().len(), 2);
    assert!(listed["next_cursor"].is_string());

    // Outside the roots, however it is spelled, and sources this
    // deployment does not read: refused before anything runs.
    for (source, why) in [
        (
            format!("file://{}", data.path().display()),
            "RAG_AGENT_SYNC_ROOTS",
        ),
        (
            format!("file://{}/../..", root.display()),
            "RAG_AGENT_SYNC_ROOTS",
        ),
        ("s3://docs/handbook/".to_string(), "RAG_AGENT_SYNC_BUCKETS"),
        ("ftp://example.com/".to_string(), "source must be"),
    ] {
        let (status, body) =
            post_json(&server.at("/ingestion-jobs"), &json!({"source": source})).await;
        if status == 202 {
            // A path checked only when listed fails the job instead.
            let id = body["id"].as_str().unwrap();
            let job = loop {
                let (_, job) = get_json(&server.at(&format!("/ingestion-jobs/{id}"))).await;
                if job["status"] == "FAILED" || job["status"] == "COMPLETED" {
                    break job;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            assert_eq!(job["status"], "FAILED", "{source}: {job}");
            assert!(job["error"].as_str().unwrap().contains(why), "{job}");
        } else {
            assert_eq!(status, 400, "{source}: {body}");
            assert!(
                body["error"]["message"].as_str().unwrap().contains(why),
                "{body}"
            );
        }
    }
    let (status, body) =
        get_json(&server.at(&format!("/ingestion-jobs/{}", uuid::Uuid::new_v4()))).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "ingestion_job_not_found");
}

fn manifest(i: usize) -> String {
    format!(
        "# Manifest {i}\n\nManifest code Q{i:04} lists the cargo of hold {i}: barrels and sacks for pier {}.\n",
        i % 17
    )
}

/// Acceptance 5: a 1,000-object prefix synced, then 10 objects deleted, 10
/// changed and 10 added, and synced again: exactly those counts, a deleted
/// object's sentence is no longer found, a changed one's new sentence is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_object_prefix_syncs_exactly_aws() {
    let stack = Stack::aws().await;
    let Stack::Aws(aws) = &stack else {
        unreachable!()
    };
    let (s3, _) = aws_client_config(&aws.moto.url);
    let bucket = format!("{}-source", aws.bucket);
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let put = |key: String, body: String| {
        let (s3, bucket) = (s3.clone(), bucket.clone());
        async move {
            s3.put_object()
                .bucket(bucket)
                .key(key)
                .content_type("text/markdown")
                .body(body.into_bytes().into())
                .send()
                .await
                .unwrap();
        }
    };
    let objects: Vec<_> = (0..1000)
        .map(|i| put(format!("manifests/{i:04}.md"), manifest(i)))
        .collect();
    futures::stream::iter(objects)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    // Outside the prefix: never listed.
    put("other/elsewhere.md".into(), manifest(5000)).await;

    let data = tempfile::tempdir().unwrap();
    let server = Server::start(
        data.path(),
        &stack,
        &[
            ("RAG_AGENT_SYNC_BUCKETS", bucket.as_str()),
            ("RAG_AGENT_INGEST_CONCURRENCY", "4"),
        ],
    );
    let request = json!({"source": format!("s3://{bucket}/manifests/")});
    let started = Instant::now();
    let first = run_job(&server, request.clone()).await;
    let first_took = started.elapsed();
    assert_eq!(first["status"], "COMPLETED", "{first}");
    assert_eq!(
        first["counts"],
        counts(1000, 0, 0, 0, 1000),
        "{}",
        first["counts"]
    );
    eprintln!("1,000 objects synced in {first_took:?}");

    for i in 0..10 {
        s3.delete_object()
            .bucket(&bucket)
            .key(format!("manifests/{i:04}.md"))
            .send()
            .await
            .unwrap();
        put(
            format!("manifests/{:04}.md", 100 + i),
            format!("# Manifest {}\n\nRevised manifest {i}: the hold now carries forty crates of saffron, lot S{i}.\n", 100 + i),
        )
        .await;
        put(format!("manifests/new/{i}.md"), manifest(2000 + i)).await;
    }
    let second = run_job(&server, request).await;
    assert_eq!(second["status"], "COMPLETED", "{second}");
    assert_eq!(
        second["counts"],
        counts(10, 10, 10, 980, 1000),
        "{}",
        second["counts"]
    );
    assert!(
        sources_for(&server, &stack, "Manifest code Q0003")
            .await
            .is_empty()
    );
    assert_eq!(
        sources_for(&server, &stack, "forty crates of saffron, lot S3").await,
        [format!("s3://{bucket}/manifests/0103.md")]
    );
    let (_, health) = get_json(&server.at("/health")).await;
    assert_eq!(health["document_count"], 1000, "{health}");
}

/// A site's pages: name (or a whole URL), `lastmod`, body.
type Pages = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>;

/// A site whose sitemap and pages the test changes between syncs.
async fn site(pages: Pages) -> u16 {
    use axum::extract::{Path as UrlPath, State};
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .route(
            "/sitemap.xml",
            axum::routing::get(move |State(pages): State<Pages>| async move {
                let urls: String = pages
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(name, lastmod, _)| {
                        let loc = if name.starts_with("http") {
                            name.clone()
                        } else {
                            format!("http://localhost:{port}/{name}")
                        };
                        format!("<url><loc>{loc}</loc><lastmod>{lastmod}</lastmod></url>")
                    })
                    .collect();
                (
                    [("content-type", "application/xml")],
                    format!("<?xml version=\"1.0\"?><urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">{urls}</urlset>"),
                )
                    .into_response()
            }),
        )
        .route(
            "/{name}",
            axum::routing::get(|State(pages): State<Pages>, UrlPath(name): UrlPath<String>| async move {
                let pages = pages.lock().unwrap();
                match pages.iter().find(|(n, _, _)| *n == name) {
                    Some((_, _, body)) => ([("content-type", "text/html")], body.clone()).into_response(),
                    None => axum::http::StatusCode::NOT_FOUND.into_response(),
                }
            }),
        )
        .with_state(pages);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

fn page(title: &str, text: &str) -> String {
    format!(
        "<html><head><title>{title}</title></head><body><main><h1>{title}</h1><p>{text}</p></main></body></html>"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sitemap_job_follows_lastmod_and_the_address_checks_embedded() {
    let pages = std::sync::Arc::new(std::sync::Mutex::new(vec![
        (
            "lanterns.html".to_string(),
            "2026-11-01".to_string(),
            page(
                "Lanterns",
                "Storm lanterns hang at every berth of the harbour.",
            ),
        ),
        (
            "ropes.html".to_string(),
            "2026-11-01".to_string(),
            page(
                "Ropes",
                "Mooring ropes are inspected each spring by the harbour master.",
            ),
        ),
        // A sitemap may name any address; the fetcher refuses this one.
        (
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "2026-11-01".to_string(),
            String::new(),
        ),
    ]));
    let port = site(pages.clone()).await;
    let data = tempfile::tempdir().unwrap();
    let allow = format!("localhost:{port}");
    let stack = Stack::embedded();
    let server = Server::start(
        data.path(),
        &stack,
        &[("RAG_AGENT_FETCH_ALLOWLIST", allow.as_str())],
    );
    let request = json!({"source": format!("http://localhost:{port}/sitemap.xml")});

    let first = run_job(&server, request.clone()).await;
    assert_eq!(first["status"], "COMPLETED", "{first}");
    let c = &first["counts"];
    assert_eq!(
        (
            c["scanned"].as_u64(),
            c["added"].as_u64(),
            c["failed"].as_u64()
        ),
        (Some(3), Some(2), Some(1)),
        "{first}"
    );
    let failure = &first["failures"][0];
    assert_eq!(failure["item"], "http://169.254.169.254/latest/meta-data/");
    assert!(
        failure["reason"]
            .as_str()
            .unwrap()
            .contains("169.254.169.254"),
        "{failure}"
    );

    // A page whose lastmod moved is indexed again; the other is left.
    {
        let mut pages = pages.lock().unwrap();
        pages[1] = (
            "ropes.html".into(),
            "2026-12-01".into(),
            page("Ropes", "Mooring ropes are now replaced every autumn."),
        );
        pages.pop();
    }
    let second = run_job(&server, request).await;
    assert_eq!(second["counts"], counts(0, 1, 0, 1, 2), "{second}");
    assert_eq!(
        sources_for(&server, &stack, "replaced every autumn").await,
        [format!("http://localhost:{port}/ropes.html")]
    );
}

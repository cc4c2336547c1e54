//! The ingest queue on AWS, driven as Lambda drives it: the API function
//! (the binary under a local Lambda Runtime API) queues accepted documents
//! on SQS (moto), this test receives the messages as the event source
//! mapping would and hands them to the worker function (the same binary)
//! as real SQS event JSON, and reads back its `batchItemFailures`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Value, json};

use crate::lambda_runtime::{RuntimeApi, make_key, rest_event, start_function, start_runtime_api};
use crate::support::*;

/// How long an undeleted message stays invisible before SQS offers it
/// again: long enough that only the worker's own visibility changes bring
/// messages back during the test.
const QUEUE_VISIBILITY_SECONDS: &str = "60";

fn sqs_client(url: &str) -> aws_sdk_sqs::Client {
    let config = aws_sdk_sqs::Config::builder()
        .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .endpoint_url(url)
        .build();
    aws_sdk_sqs::Client::from_conf(config)
}

struct Queues {
    sqs: aws_sdk_sqs::Client,
    url: String,
    arn: String,
    dead_letter_url: String,
    dead_letter_arn: String,
}

/// The template's two queues: the ingest queue, redriven to its
/// dead-letter queue after three receives.
async fn create_queues(moto_url: &str) -> Queues {
    let sqs = sqs_client(moto_url);
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..8].to_string();
    let arn_of = |url: String| {
        let sqs = sqs.clone();
        async move {
            let attributes = sqs
                .get_queue_attributes()
                .queue_url(&url)
                .attribute_names(QueueAttributeName::QueueArn)
                .send()
                .await
                .unwrap();
            attributes.attributes().unwrap()[&QueueAttributeName::QueueArn].clone()
        }
    };
    let dead_letter_url = sqs
        .create_queue()
        .queue_name(format!("ingest-dlq-{suffix}"))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let dead_letter_arn = arn_of(dead_letter_url.clone()).await;
    let url = sqs
        .create_queue()
        .queue_name(format!("ingest-{suffix}"))
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            QUEUE_VISIBILITY_SECONDS,
        )
        .attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": 3}).to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_string();
    let arn = arn_of(url.clone()).await;
    Queues {
        sqs,
        url,
        arn,
        dead_letter_url,
        dead_letter_arn,
    }
}

/// The functions of the stack use the two queues, as the template's do.
fn use_queues(aws: &mut AwsStack, queues: &Queues) {
    for (name, value) in [
        ("INGEST_QUEUE_URL", queues.url.clone()),
        (
            "INGEST_DEAD_LETTER_QUEUE_URL",
            queues.dead_letter_url.clone(),
        ),
        ("AWS_ENDPOINT_URL_SQS", aws.moto.url.clone()),
    ] {
        aws.extra_env.push((name.to_string(), value));
    }
}

/// What the event source mapping receives: up to ten messages, waiting up
/// to `wait` for the first.
async fn receive(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
    wait: Duration,
) -> Vec<aws_sdk_sqs::types::Message> {
    let deadline = Instant::now() + wait;
    loop {
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let messages = received.messages.unwrap_or_default();
        if !messages.is_empty() || Instant::now() >= deadline {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The document a message's job names.
fn document_of(message: &aws_sdk_sqs::types::Message) -> String {
    let job: Value = serde_json::from_str(message.body().unwrap()).unwrap();
    job["document_id"].as_str().unwrap().to_string()
}

/// One SQS record as Lambda's event source mapping hands it over.
fn record(message: &aws_sdk_sqs::types::Message, source_arn: &str) -> Value {
    let attributes: serde_json::Map<String, Value> = message
        .attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_string(), json!(v)))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "messageId": message.message_id(),
        "receiptHandle": message.receipt_handle(),
        "body": message.body(),
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": message.md5_of_body(),
        "eventSource": "aws:sqs",
        "eventSourceARN": source_arn,
        "awsRegion": "us-east-1"
    })
}

/// Sends one event to a function and waits for its response.
async fn invoke(api: &Arc<RuntimeApi>, event: Value) -> Value {
    let id = uuid::Uuid::new_v4().to_string();
    api.events.lock().unwrap().push_back((id.clone(), event));
    let started = Instant::now();
    loop {
        if let Some((_, _, body)) = api
            .responses
            .lock()
            .unwrap()
            .iter()
            .find(|(r, _, _)| *r == id)
        {
            return serde_json::from_slice(body).unwrap();
        }
        assert!(
            api.errors.lock().unwrap().is_empty(),
            "{:?}",
            api.errors.lock().unwrap()
        );
        assert!(started.elapsed() < Duration::from_secs(120), "no response");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ids of the records the worker wants delivered again.
fn failed_ids(response: &Value) -> Vec<String> {
    let mut ids: Vec<String> = response["batchItemFailures"]
        .as_array()
        .unwrap_or_else(|| panic!("not a batch response: {response}"))
        .iter()
        .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// What a worker that died leaves: the message visible again at once.
async fn make_visible(queues: &Queues, message: &aws_sdk_sqs::types::Message) {
    queues
        .sqs
        .change_message_visibility()
        .queue_url(&queues.url)
        .receipt_handle(message.receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
}

/// Deletes what the worker finished, as the event source mapping does.
async fn delete_finished(
    queues: &Queues,
    url: &str,
    messages: &[aws_sdk_sqs::types::Message],
    failed: &[String],
) {
    for message in messages {
        if !failed
            .iter()
            .any(|f| Some(f.as_str()) == message.message_id())
        {
            queues
                .sqs
                .delete_message()
                .queue_url(url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
    }
}

async fn document(api: &Arc<RuntimeApi>, key: &str, id: &str) -> Value {
    let response = invoke(
        api,
        rest_event("GET", &format!("/documents/{id}"), None, Some(key)),
    )
    .await;
    assert_eq!(response["statusCode"], 200, "{response}");
    serde_json::from_str(response["body"].as_str().unwrap()).unwrap()
}

fn notes(subject: &str) -> String {
    (0..4)
        .map(|i| format!("Note {i} on {subject}. This note, number {i}, is long enough to be a passage of its own.\n\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqs_worker_indexes_once_reports_failures_and_fails_dead_letters_aws() {
    let mut stack = Stack::aws_with(&[("BEDROCK_MAX_ATTEMPTS", "1")]).await;
    let Stack::Aws(aws) = &mut stack else {
        unreachable!()
    };
    let queues = create_queues(&aws.moto.url).await;
    use_queues(aws, &queues);
    let Stack::Aws(aws) = &stack else {
        unreachable!()
    };
    let key = make_key(&stack, "default", "writer");
    let (api, api_addr) = start_runtime_api().await;
    let (worker, worker_addr) = start_runtime_api().await;
    let mut api_function = start_function(&stack, &api_addr, false);
    let mut worker_function = start_function(&stack, &worker_addr, false);
    stack
        .emulator()
        .unwrap()
        .set_faults(rag_aws_emulator::Faults {
            throttle_texts_containing: Some("quota-bound".into()),
            ..Default::default()
        });

    // The API function answers at once: the documents wait on the queue.
    let mut ids = Vec::new();
    for (title, subject) in [
        ("Borrowing", "borrowing and references"),
        ("Doomed", "a quota-bound subject"),
        ("Orphaned", "a worker that was killed"),
    ] {
        let response = invoke(
            &api,
            rest_event(
                "POST",
                "/documents/ingest",
                Some(json!({"title": title, "content": notes(subject)})),
                Some(&key),
            ),
        )
        .await;
        assert_eq!(response["statusCode"], 202, "{response}");
        let body: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["document"]["status"], "PENDING", "{body}");
        ids.push(body["document"]["id"].as_str().unwrap().to_string());
    }
    let (borrowing, doomed, orphaned) = (&ids[0], &ids[1], &ids[2]);

    // The event source mapping takes the first two; the third's worker is
    // killed on every receive (received, never answered) further down.
    let mut first = receive(&queues.sqs, &queues.url, Duration::from_secs(10)).await;
    assert_eq!(first.len(), 3, "one message per document");
    let orphan_message = first
        .iter()
        .position(|m| document_of(m) == *orphaned)
        .map(|i| first.remove(i))
        .unwrap();
    let response = invoke(
        &worker,
        json!({"Records": first.iter().map(|m| record(m, &queues.arn)).collect::<Vec<_>>()}),
    )
    .await;
    let doomed_message = first
        .iter()
        .find(|m| document_of(m) == *doomed)
        .unwrap()
        .clone();
    let borrowing_message = first
        .iter()
        .find(|m| document_of(m) == *borrowing)
        .unwrap()
        .clone();
    // Only the throttled document is reported; the rest of the batch is done.
    assert_eq!(
        failed_ids(&response),
        [doomed_message.message_id().unwrap().to_string()],
        "{response}"
    );
    delete_finished(&queues, &queues.url, &first, &failed_ids(&response)).await;
    let indexed = document(&api, &key, borrowing).await;
    assert_eq!(indexed["status"], "INDEXED", "{indexed}");
    let chunks = indexed["chunk_count"].as_u64().unwrap();
    assert!(chunks > 0);
    let retrying = document(&api, &key, doomed).await;
    assert_eq!(retrying["status"], "PENDING", "{retrying}");
    assert!(
        retrying["error"]
            .as_str()
            .unwrap()
            .starts_with("attempt 1 of 3 failed and will be retried"),
        "{retrying}"
    );

    // The worker brought the failed message back after its backoff (2 s,
    // not the queue's 60 s), and it comes with the finished document's
    // message again, as at-least-once delivery may: that one changes
    // nothing.
    for receive_count in 2..=3 {
        let again = receive(&queues.sqs, &queues.url, Duration::from_secs(15)).await;
        assert_eq!(again.len(), 1, "receive {receive_count}");
        assert_eq!(again[0].body(), doomed_message.body());
        assert_eq!(
            again[0].attributes().unwrap()[&MessageSystemAttributeName::ApproximateReceiveCount],
            receive_count.to_string()
        );
        let records = vec![
            record(&again[0], &queues.arn),
            record(&borrowing_message, &queues.arn),
        ];
        let response = invoke(&worker, json!({ "Records": records })).await;
        assert_eq!(
            failed_ids(&response),
            [again[0].message_id().unwrap().to_string()],
            "{response}"
        );
    }
    let failed = document(&api, &key, doomed).await;
    assert_eq!(failed["status"], "FAILED", "{failed}");
    let reason = failed["error"].as_str().unwrap();
    assert!(reason.contains("throttled"), "{failed}");
    assert!(!reason.starts_with("attempt"), "{failed}");
    assert_eq!(document(&api, &key, borrowing).await["chunk_count"], chunks);

    // The orphan's worker dies on each of its receives (received, never
    // answered): SQS counts them all the same.
    let mut orphan = orphan_message;
    for receive_count in 2..=3 {
        make_visible(&queues, &orphan).await;
        let again = receive(&queues.sqs, &queues.url, Duration::from_secs(10)).await;
        orphan = again
            .into_iter()
            .find(|m| m.body() == orphan.body())
            .expect("the orphan's message again");
        assert_eq!(
            orphan.attributes().unwrap()[&MessageSystemAttributeName::ApproximateReceiveCount],
            receive_count.to_string()
        );
    }
    make_visible(&queues, &orphan).await;
    // Past their third receive, both leftovers move to the dead-letter
    // queue on the next receive, which finds nothing on the ingest queue.
    let left = receive(&queues.sqs, &queues.url, Duration::from_secs(1)).await;
    assert!(left.is_empty(), "{left:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut dead = Vec::new();
    while dead.len() < 2 {
        assert!(Instant::now() < deadline, "dead letters: {dead:?}");
        dead.extend(receive(&queues.sqs, &queues.dead_letter_url, Duration::from_secs(1)).await);
    }
    let records: Vec<Value> = dead
        .iter()
        .map(|m| record(m, &queues.dead_letter_arn))
        .collect();
    let response = invoke(&worker, json!({ "Records": records })).await;
    assert!(failed_ids(&response).is_empty(), "{response}");
    // The document its worker left is FAILED with why, never PENDING; the
    // one that had failed keeps its reason.
    let orphan = document(&api, &key, orphaned).await;
    assert_eq!(orphan["status"], "FAILED", "{orphan}");
    assert!(
        orphan["error"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 3 deliveries"),
        "{orphan}"
    );
    assert_eq!(document(&api, &key, doomed).await["error"], failed["error"]);
    // Exactly the indexed document's vectors exist.
    assert_eq!(
        aws.emulator.vector_count(&aws.vector_bucket, &aws.index) as u64,
        chunks
    );

    for child in [&mut api_function, &mut worker_function] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The template's notification: objects created under `uploads/` whose
/// key ends in `/object` are sent to the ingest queue.
async fn notify_uploads(s3: &aws_sdk_s3::Client, bucket: &str, queue_arn: &str) {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    let rule =
        |name: FilterRuleName, value: &str| FilterRule::builder().name(name).value(value).build();
    let filter = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(rule(FilterRuleName::Prefix, "uploads/"))
                .filter_rules(rule(FilterRuleName::Suffix, "/object"))
                .build(),
        )
        .build();
    s3.put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(queue_arn)
                        .events(Event::from("s3:ObjectCreated:*"))
                        .filter(filter)
                        .build()
                        .unwrap(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presigned_upload_reaches_the_worker_through_the_buckets_notification_aws() {
    let mut stack = Stack::aws().await;
    let Stack::Aws(aws) = &mut stack else {
        unreachable!()
    };
    let queues = create_queues(&aws.moto.url).await;
    use_queues(aws, &queues);
    let Stack::Aws(aws) = &stack else {
        unreachable!()
    };
    let (s3, _) = aws_client_config(&aws.moto.url);
    notify_uploads(&s3, &aws.bucket, &queues.arn).await;
    let key = make_key(&stack, "default", "writer");
    let (api, api_addr) = start_runtime_api().await;
    let (worker, worker_addr) = start_runtime_api().await;
    let mut api_function = start_function(&stack, &api_addr, false);
    let mut worker_function = start_function(&stack, &worker_addr, false);

    // The API function declares the upload and signs a PUT straight to the
    // bucket: the bytes never pass through it.
    let pdf = crate::direct_uploads::make_pdf(300, 0);
    let response = invoke(
        &api,
        rest_event(
            "POST",
            "/documents/uploads",
            Some(json!({"filename": "manual.pdf", "content_type": "application/pdf", "size": pdf.len()})),
            Some(&key),
        ),
    )
    .await;
    assert_eq!(response["statusCode"], 201, "{response}");
    let ticket: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    let id = ticket["document_id"].as_str().unwrap().to_string();
    let url = ticket["upload_url"].as_str().unwrap();
    assert!(url.starts_with(&aws.moto.url), "{url}");
    assert!(
        url.contains(&format!("/uploads/default/{id}/object?")),
        "{url}"
    );
    assert!(url.contains("X-Amz-Signature="), "{url}");
    let mut put = client().put(url);
    for (name, value) in ticket["headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    let stored = put.body(pdf).send().await.unwrap();
    assert!(stored.status().is_success(), "{:?}", stored.text().await);
    // Nothing exists under the id until the worker accepts it.
    let pending = invoke(
        &api,
        rest_event("GET", &format!("/documents/{id}"), None, Some(&key)),
    )
    .await;
    assert_eq!(pending["statusCode"], 404, "{pending}");

    // The bucket's notification put an S3 event on the ingest queue (after
    // S3's test event for the new configuration, which names no upload).
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !messages.iter().any(|m: &aws_sdk_sqs::types::Message| {
        m.body().unwrap_or_default().contains("ObjectCreated")
    }) {
        assert!(Instant::now() < deadline, "no upload event: {messages:?}");
        messages.extend(receive(&queues.sqs, &queues.url, Duration::from_secs(2)).await);
    }
    let records: Vec<Value> = messages.iter().map(|m| record(m, &queues.arn)).collect();
    let response = invoke(&worker, json!({ "Records": records })).await;
    assert!(failed_ids(&response).is_empty(), "{response}");
    let indexed = document(&api, &key, &id).await;
    assert_eq!(indexed["status"], "INDEXED", "{indexed}");
    assert_eq!(indexed["chunk_count"], 300, "one chunk a page");
    assert_eq!(indexed["title"], "manual.pdf");
    assert_eq!(
        aws.emulator.vector_count(&aws.vector_bucket, &aws.index),
        300
    );
    // What the upload left in the bucket is gone once it was accepted.
    let left = s3
        .list_objects_v2()
        .bucket(&aws.bucket)
        .prefix("uploads/")
        .send()
        .await
        .unwrap();
    assert_eq!(left.key_count(), Some(0), "{left:?}");

    // The same event delivered again changes nothing.
    let upload_event = messages
        .iter()
        .find(|m| m.body().unwrap_or_default().contains("ObjectCreated"))
        .unwrap();
    let response = invoke(
        &worker,
        json!({ "Records": [record(upload_event, &queues.arn)] }),
    )
    .await;
    assert!(failed_ids(&response).is_empty(), "{response}");
    let again = document(&api, &key, &id).await;
    assert_eq!(again["updated_at"], indexed["updated_at"]);
    assert_eq!(
        aws.emulator.vector_count(&aws.vector_bucket, &aws.index),
        300
    );

    for child in [&mut api_function, &mut worker_function] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Receives until `count` messages have come, as the event source mapping
/// would over several polls.
async fn receive_all(queues: &Queues, count: usize) -> Vec<aws_sdk_sqs::types::Message> {
    let mut messages = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while messages.len() < count {
        assert!(Instant::now() < deadline, "only {messages:?}");
        messages.extend(receive(&queues.sqs, &queues.url, Duration::from_secs(1)).await);
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingestion_job_fans_out_through_the_queue_aws() {
    let mut stack = Stack::aws().await;
    let Stack::Aws(aws) = &mut stack else {
        unreachable!()
    };
    let queues = create_queues(&aws.moto.url).await;
    use_queues(aws, &queues);
    let bucket = format!("{}-source", aws.bucket);
    aws.extra_env
        .push(("RAG_AGENT_SYNC_BUCKETS".into(), bucket.clone()));
    let Stack::Aws(aws) = &stack else {
        unreachable!()
    };
    let (s3, _) = aws_client_config(&aws.moto.url);
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    for (i, subject) in ["borrowing", "lifetimes", "traits"].iter().enumerate() {
        s3.put_object()
            .bucket(&bucket)
            .key(format!("book/{i}.md"))
            .body(notes(subject).into_bytes().into())
            .send()
            .await
            .unwrap();
    }
    let key = make_key(&stack, "default", "writer");
    let (api, api_addr) = start_runtime_api().await;
    let (worker, worker_addr) = start_runtime_api().await;
    let mut api_function = start_function(&stack, &api_addr, false);
    let mut worker_function = start_function(&stack, &worker_addr, false);

    // The API function stores the job and queues its listing: no
    // invocation lists or reads the source but the worker's.
    let response = invoke(
        &api,
        rest_event(
            "POST",
            "/ingestion-jobs",
            Some(json!({"source": format!("s3://{bucket}/book/")})),
            Some(&key),
        ),
    )
    .await;
    assert_eq!(response["statusCode"], 202, "{response}");
    let job: Value = serde_json::from_str(response["body"].as_str().unwrap()).unwrap();
    let job_path = format!("/ingestion-jobs/{}", job["id"].as_str().unwrap());

    // The listing hands out one task per object, each its own message.
    let listing = receive_all(&queues, 1).await;
    let response = invoke(
        &worker,
        json!({"Records": listing.iter().map(|m| record(m, &queues.arn)).collect::<Vec<_>>()}),
    )
    .await;
    assert!(failed_ids(&response).is_empty(), "{response}");
    let items = receive_all(&queues, 3).await;
    assert_eq!(items.len(), 3);
    let running = invoke(&api, rest_event("GET", &job_path, None, Some(&key))).await;
    let running: Value = serde_json::from_str(running["body"].as_str().unwrap()).unwrap();
    assert_eq!(running["status"], "RUNNING", "{running}");
    assert_eq!(running["pending"], 3, "{running}");

    let response = invoke(
        &worker,
        json!({"Records": items.iter().map(|m| record(m, &queues.arn)).collect::<Vec<_>>()}),
    )
    .await;
    assert!(failed_ids(&response).is_empty(), "{response}");
    let done = invoke(&api, rest_event("GET", &job_path, None, Some(&key))).await;
    let done: Value = serde_json::from_str(done["body"].as_str().unwrap()).unwrap();
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(done["counts"]["added"], 3, "{done}");
    assert_eq!(done["pending"], 0, "{done}");
    let vectors = aws.emulator.vector_count(&aws.vector_bucket, &aws.index);
    assert!(vectors >= 3, "{vectors}");

    // A task delivered again after its job ended changes nothing.
    let response = invoke(
        &worker,
        json!({"Records": [record(&items[0], &queues.arn)]}),
    )
    .await;
    assert!(failed_ids(&response).is_empty(), "{response}");
    assert_eq!(
        aws.emulator.vector_count(&aws.vector_bucket, &aws.index),
        vectors
    );

    for child in [&mut api_function, &mut worker_function] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

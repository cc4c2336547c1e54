//! `rag-agent reindex`: every stored chunk embedded again, with the
//! embedding model the `serve` settings name, into a new vector index
//! beside the current one. A data directory switches over (a rename, then
//! the record of the model) only once the new index is complete, so an
//! interrupted run leaves the old index in use; on S3 Vectors the new index
//! is ready when this ends, and the deployment switches by pointing
//! `S3_VECTOR_INDEX_NAME` at it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rag_core::ingest::reindex::{ChunkText, ReindexProgress, reindex};
use rag_core::{Embedder, MetadataStore, VectorStore};
use rag_local::{AnnSettings, LocalVectorIndex, SqliteStore};

use crate::config::{EmbeddingProvider, MetadataBackend, ReindexArgs, ServeArgs, VectorBackend};
use crate::{aws, embedding};

/// The index being built, and where the one it replaces is kept.
const BUILDING: &str = "vectors.reindex.log";
const CURRENT: &str = "vectors.log";
const PREVIOUS: &str = "vectors.previous.log";

/// Progress lines are this far apart at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

pub async fn run(args: &ReindexArgs) -> anyhow::Result<()> {
    match args.serve.aws.vector_backend {
        VectorBackend::Local => {
            if args.target_index.is_some() {
                bail!(
                    "--target-index names an S3 Vectors index; a local index is rebuilt beside the current one in the data directory"
                );
            }
            local(&args.serve).await
        }
        VectorBackend::S3vectors => s3_vectors(args).await,
    }
}

/// Rebuilds the data directory's index beside it, then switches over.
async fn local(args: &ServeArgs) -> anyhow::Result<()> {
    if args.aws.metadata_backend != MetadataBackend::Sqlite {
        bail!(
            "a local vector index is rebuilt from the data directory's database (METADATA_BACKEND=sqlite)"
        );
    }
    let data_dir = args.data_dir();
    let database = data_dir.join("rag.sqlite3");
    if !database.exists() {
        bail!("{} holds no rag-agent data directory", data_dir.display());
    }
    let embedder = new_embedder(args).await?;
    let store = SqliteStore::open(&database).context("opening the database")?;

    let building = data_dir.join(BUILDING);
    remove_index(&building)?;
    let target = LocalVectorIndex::open_with(
        &building,
        embedder.dimension(),
        AnnSettings {
            min_rows: args.vector_graph_min_rows,
            ..AnnSettings::default()
        },
    )
    .context("creating the new vector index")?;
    eprintln!(
        "re-embedding every chunk in {} with {} ({} dimensions)",
        data_dir.display(),
        embedder.model_id(),
        embedder.dimension()
    );
    let report = run_reindex(
        &store,
        ChunkText::Lexical(&store),
        embedder.as_ref(),
        &target,
    )
    .await?;
    // The new index is complete: drop it (its graph, if any, is saved),
    // then put it in place of the current one.
    drop(target);
    switch_over(&data_dir)?;
    embedding::record_index_model(&data_dir, embedder.as_ref())?;
    println!(
        "re-embedded {} chunks of {} documents with {} in {:.1}s; {} now holds them (the previous index is kept as {PREVIOUS}). Restart the server with the same embedding settings.",
        report.progress.chunks,
        report.progress.documents,
        embedder.model_id(),
        report.seconds,
        data_dir.join(CURRENT).display()
    );
    Ok(())
}

/// Re-embeds into a new S3 Vectors index, read from the current one (its
/// vectors keep their chunk text), with the metadata store as `serve`
/// opens it.
async fn s3_vectors(args: &ReindexArgs) -> anyhow::Result<()> {
    let serve = &args.serve;
    let current = &serve.aws.s3_vector_index;
    let Some(target_index) = &args.target_index else {
        bail!(
            "on S3 Vectors, name the new index with --target-index (REINDEX_TARGET_INDEX); {current} (S3_VECTOR_INDEX_NAME) keeps serving until the deployment is pointed at the new one"
        );
    };
    if target_index == current {
        bail!("--target-index must name a new index, not {current} (S3_VECTOR_INDEX_NAME)");
    }
    let embedder = new_embedder(serve).await?;
    let sdk = aws::sdk_config(&serve.aws).await;
    let source = aws::vector_store_named(&sdk, &serve.aws, current, embedder.dimension(), false)?;
    let target =
        aws::vector_store_named(&sdk, &serve.aws, target_index, embedder.dimension(), true)?;
    target
        .ensure_index(true)
        .await
        .with_context(|| format!("creating the S3 Vectors index {target_index}"))?;
    let metadata: Box<dyn MetadataStore> = match serve.aws.metadata_backend {
        MetadataBackend::Dynamodb => Box::new(aws::metadata_store(&sdk, &serve.aws)?),
        MetadataBackend::Sqlite => Box::new(
            SqliteStore::open(&serve.data_dir().join("rag.sqlite3"))
                .context("opening the database")?,
        ),
    };
    eprintln!(
        "re-embedding every chunk of {current} into {target_index} with {} ({} dimensions)",
        embedder.model_id(),
        embedder.dimension()
    );
    let report = run_reindex(
        metadata.as_ref(),
        ChunkText::Vectors(&source),
        embedder.as_ref(),
        &target,
    )
    .await?;
    println!(
        "re-embedded {} chunks of {} documents with {} into {target_index} in {:.1}s. Switch by setting S3_VECTOR_INDEX_NAME={target_index} (the template's VectorIndexName) with the same embedding settings; {current} can be deleted afterwards.",
        report.progress.chunks,
        report.progress.documents,
        embedder.model_id(),
        report.seconds,
    );
    Ok(())
}

/// What a finished reindex did, and how long it took.
struct Finished {
    progress: ReindexProgress,
    seconds: f64,
}

/// Runs the reindex with a progress line on stderr at most every
/// `PROGRESS_EVERY`, and a last one at the end.
async fn run_reindex(
    metadata: &dyn MetadataStore,
    text: ChunkText<'_>,
    embedder: &dyn Embedder,
    target: &dyn VectorStore,
) -> anyhow::Result<Finished> {
    let started = Instant::now();
    let mut last = Instant::now();
    let progress = reindex(metadata, text, embedder, target, |progress| {
        if last.elapsed() >= PROGRESS_EVERY {
            last = Instant::now();
            eprintln!("{}", line(progress));
        }
    })
    .await
    .context("re-embedding the chunks (the current index is untouched)")?;
    eprintln!("{}", line(&progress));
    Ok(Finished {
        progress,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn line(progress: &ReindexProgress) -> String {
    format!(
        "reindex: {}/{} documents, {} chunks",
        progress.documents, progress.total_documents, progress.chunks
    )
}

/// The embedding model the settings name; the local MiniLM must be
/// present, since an index without vectors is no index.
async fn new_embedder(args: &ServeArgs) -> anyhow::Result<std::sync::Arc<dyn Embedder>> {
    Ok(match args.embedding_provider {
        EmbeddingProvider::Local => {
            let mut warnings = Vec::new();
            match embedding::load_local_embedder(args, &mut warnings) {
                Some(embedder) => embedder,
                None => bail!("{}", warnings.join("; ")),
            }
        }
        EmbeddingProvider::Openai => embedding::openai_embedder(args).await?,
        EmbeddingProvider::Bedrock => {
            let sdk = aws::sdk_config(&args.aws).await;
            aws::embedder(&sdk, &args.aws, args.vector_dimension)?
        }
    })
}

/// Puts the index at `BUILDING` in place of `CURRENT`, keeping the current
/// one as `PREVIOUS`. Each step is a rename within the directory.
fn switch_over(data_dir: &Path) -> anyhow::Result<()> {
    let current = data_dir.join(CURRENT);
    let previous = data_dir.join(PREVIOUS);
    remove_index(&previous)?;
    if current.exists() {
        std::fs::rename(&current, &previous).context("keeping the current index")?;
        // Its graph describes the old vectors; the new index has its own.
        remove_file(&current.with_extension("graph"))?;
    }
    let building = data_dir.join(BUILDING);
    std::fs::rename(&building, &current).context("putting the new index in place")?;
    let graph = building.with_extension("graph");
    if graph.exists() {
        std::fs::rename(&graph, current.with_extension("graph"))
            .context("putting the new index's graph in place")?;
    }
    Ok(())
}

/// Removes an index's log and graph, if there are any.
fn remove_index(log: &Path) -> anyhow::Result<()> {
    remove_file(log)?;
    remove_file(&log.with_extension("graph"))
}

fn remove_file(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

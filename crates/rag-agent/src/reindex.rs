//! `rag-agent reindex`: every chunk of the data directory embedded again,
//! with the embedding model the `serve` settings name, into a new local
//! vector index beside the current one; the directory switches over (a
//! rename, then the record of the model) only once the new index is
//! complete, so an interrupted run leaves the old index in use.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rag_core::Embedder;
use rag_core::ingest::reindex::{ChunkText, ReindexProgress, reindex};
use rag_local::{AnnSettings, LocalVectorIndex, SqliteStore};

use crate::config::{EmbeddingProvider, MetadataBackend, ServeArgs, VectorBackend};
use crate::{aws, embedding};

/// The index being built, and where the one it replaces is kept.
const BUILDING: &str = "vectors.reindex.log";
const CURRENT: &str = "vectors.log";
const PREVIOUS: &str = "vectors.previous.log";

/// Progress lines are this far apart at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

pub async fn run(args: &ServeArgs) -> anyhow::Result<()> {
    if args.aws.vector_backend != VectorBackend::Local
        || args.aws.metadata_backend != MetadataBackend::Sqlite
    {
        bail!(
            "rag-agent reindex rebuilds the local vector index of a data directory (VECTOR_BACKEND=local, METADATA_BACKEND=sqlite); an S3 Vectors index is not re-embedded by it yet"
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
    let started = Instant::now();
    let mut last = Instant::now();
    let report = reindex(
        &store,
        ChunkText::Lexical(&store),
        embedder.as_ref(),
        &target,
        |progress| {
            if last.elapsed() >= PROGRESS_EVERY {
                last = Instant::now();
                eprintln!("{}", line(progress));
            }
        },
    )
    .await
    .context("re-embedding the chunks (the current index is untouched)")?;
    eprintln!("{}", line(&report));
    // The new index is complete: drop it (its graph, if any, is saved),
    // then put it in place of the current one.
    drop(target);
    switch_over(&data_dir)?;
    embedding::record_index_model(&data_dir, embedder.as_ref())?;
    println!(
        "re-embedded {} chunks of {} documents with {} in {:.1}s; {} now holds them (the previous index is kept as {PREVIOUS}). Restart the server with the same embedding settings.",
        report.chunks,
        report.documents,
        embedder.model_id(),
        started.elapsed().as_secs_f64(),
        data_dir.join(CURRENT).display()
    );
    Ok(())
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

//! For each `label<TAB>sentence<TAB>passage` line of a file, the lexical
//! support score the citation check gives the sentence citing the passage,
//! and MiniLM's cosine similarity between the two: whether embedding
//! overlap tells a supported claim from an unsupported one better than
//! words do (docs/BENCHMARKS.md):
//!
//!     cargo run --release -p rag-local --example support_similarity -- \
//!         ~/.cache/rag-agent/models/all-MiniLM-L6-v2 benches/data/citation-support-pairs.tsv

use rag_core::Embedder;
use rag_core::answer::{CitedPassage, verify_citations};
use rag_local::MiniLmEmbedder;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: support_similarity MODEL_DIR PAIRS.tsv";
    let dir = std::path::PathBuf::from(args.next().expect(usage));
    let pairs = std::fs::read_to_string(args.next().expect(usage)).expect("read the pairs");
    let model = MiniLmEmbedder::load(&dir).expect("load MiniLM");
    for line in pairs.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let [label, sentence, passage] = fields[..] else {
            panic!("not label<TAB>sentence<TAB>passage: {line}");
        };
        let vectors = model
            .embed(&[sentence.to_string(), passage.to_string()])
            .await
            .expect("embed");
        let cosine: f32 = vectors[0].iter().zip(&vectors[1]).map(|(a, b)| a * b).sum();
        let checked = verify_citations(
            &format!("{sentence} [1]"),
            &[CitedPassage {
                number: 1,
                chunk_id: "c",
                text: passage,
            }],
        );
        let lexical = checked.citations.first().map_or(0.0, |c| c.score);
        println!("{label}\t{lexical:.3}\t{cosine:.3}\t{sentence}");
    }
}

//! What a citation shows: each hit with its document's title and source.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use uuid::Uuid;

use crate::backend::MetadataStore;
use crate::domain::{Document, SourceReference, VectorSearchResult};
use crate::error::RagError;
use crate::tenant::Tenant;

/// A citation's snippet is the chunk's first characters.
const SNIPPET_CHARS: usize = 300;

/// Each hit, numbered from 1 in order, with its document's title and
/// source. Each document is read once however many of its chunks hit.
pub async fn source_references(
    metadata: &dyn MetadataStore,
    tenant: &Tenant,
    hits: &[VectorSearchResult],
) -> Result<Vec<SourceReference>, RagError> {
    let mut documents: HashMap<Uuid, Option<Document>> = HashMap::new();
    for hit in hits {
        if let Entry::Vacant(slot) = documents.entry(hit.document_id) {
            slot.insert(metadata.get(tenant, hit.document_id).await?);
        }
    }
    Ok(hits
        .iter()
        .enumerate()
        .map(|(i, hit)| {
            let doc = documents.get(&hit.document_id).and_then(Option::as_ref);
            SourceReference {
                citation: i + 1,
                document_id: hit.document_id,
                chunk_id: hit.chunk_id.clone(),
                title: doc.map(|d| d.title.clone()).unwrap_or_default(),
                source: doc.map(|d| d.source.clone()).unwrap_or_default(),
                score: hit.score,
                snippet: snippet(&hit.content),
                chunk_index: hit.metadata.chunk_index,
                start_char: hit.metadata.start_char,
                end_char: hit.metadata.end_char,
                location: hit.metadata.location.clone(),
            }
        })
        .collect())
}

fn snippet(content: &str) -> String {
    if content.chars().count() <= SNIPPET_CHARS {
        return content.to_string();
    }
    let mut s: String = content.chars().take(SNIPPET_CHARS).collect();
    s.push('…');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_cut_on_characters_with_an_ellipsis() {
        assert_eq!(snippet("short"), "short");
        let long = "é".repeat(SNIPPET_CHARS + 5);
        let cut = snippet(&long);
        assert_eq!(cut.chars().count(), SNIPPET_CHARS + 1);
        assert!(cut.ends_with('…'));
    }
}

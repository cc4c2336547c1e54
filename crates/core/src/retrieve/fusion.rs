//! Reciprocal rank fusion of ranked lists, as hybrid search combines its
//! dense and lexical sides.

use std::collections::HashMap;

use crate::domain::VectorSearchResult;

/// The `k` of reciprocal rank fusion; 60 is the value from the original
/// paper and what most hybrid search engines use.
const RRF_K: f32 = 60.0;

/// Fuses ranked lists: each chunk scores the sum of `1 / (k + rank)` over the
/// lists it appears in. Ties keep the order of first appearance.
pub fn reciprocal_rank_fusion(
    lists: &[Vec<VectorSearchResult>],
    top_k: usize,
) -> Vec<VectorSearchResult> {
    let mut fused: Vec<VectorSearchResult> = Vec::new();
    let mut position: HashMap<String, usize> = HashMap::new();
    let mut scores: Vec<f32> = Vec::new();
    for list in lists {
        for (rank, hit) in list.iter().enumerate() {
            let contribution = 1.0 / (RRF_K + rank as f32 + 1.0);
            match position.get(&hit.chunk_id) {
                Some(&i) => scores[i] += contribution,
                None => {
                    position.insert(hit.chunk_id.clone(), fused.len());
                    fused.push(hit.clone());
                    scores.push(contribution);
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..fused.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(top_k)
        .map(|i| {
            let mut hit = fused[i].clone();
            hit.score = scores[i];
            hit
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChunkMetadata;
    use uuid::Uuid;

    fn hit(id: &str, score: f32) -> VectorSearchResult {
        VectorSearchResult {
            document_id: Uuid::nil(),
            chunk_id: id.to_string(),
            score,
            content: id.to_string(),
            metadata: ChunkMetadata {
                chunk_id: id.to_string(),
                document_id: Uuid::nil(),
                chunk_index: 0,
                start_char: 0,
                end_char: 0,
                token_count: 0,
                location: Default::default(),
            },
        }
    }

    #[test]
    fn fusion_rewards_agreement() {
        let dense = vec![hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)];
        let lexical = vec![hit("c", 12.0), hit("b", 11.0), hit("d", 3.0)];
        let fused = reciprocal_rank_fusion(&[dense, lexical], 3);
        let ids: Vec<&str> = fused.iter().map(|h| h.chunk_id.as_str()).collect();
        // c (ranks 3 and 1) edges out b (ranks 2 and 2); a, found once, trails.
        assert_eq!(ids, ["c", "b", "a"]);
        assert!(fused[0].score > fused[2].score);
    }

    #[test]
    fn fusion_of_one_list_keeps_its_order() {
        let fused = reciprocal_rank_fusion(&[vec![hit("x", 0.1), hit("y", 0.05)]], 10);
        let ids: Vec<&str> = fused.iter().map(|h| h.chunk_id.as_str()).collect();
        assert_eq!(ids, ["x", "y"]);
    }
}

//! The graph's links as bytes, so a large index need not rebuild its
//! graph after a restart. Decoding checks every count and link against
//! the graph's shape: a damaged file is refused, never trusted.

use super::{Graph, MAX_LEVEL};

const NO_ENTRY: u32 = u32::MAX;
/// Bytes before the levels: five u32 and the level generator's u64 state.
const HEADER: usize = 5 * 4 + 8;

fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

/// Reads little-endian words off the front of a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, len: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(len)?;
        self.0 = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?))
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    fn words(&mut self, count: usize) -> Option<Vec<u32>> {
        let bytes = self.bytes(count.checked_mul(4)?)?;
        Some(
            bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )
    }
}

impl Graph {
    /// Appends the graph to `out`; [`Graph::decode`] reads it back.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let upper_words: usize = self.upper.iter().map(Vec::len).sum();
        out.reserve(HEADER + self.len() + 4 * (self.base.len() + upper_words));
        for value in [
            self.len() as u32,
            self.dimension as u32,
            self.m as u32,
            self.ef_construction as u32,
            self.entry.unwrap_or(NO_ENTRY),
        ] {
            put_u32(out, value);
        }
        out.extend_from_slice(&self.rng.to_le_bytes());
        out.extend_from_slice(&self.levels);
        for &word in self.base.iter().chain(self.upper.iter().flatten()) {
            put_u32(out, word);
        }
    }

    /// The graph `encode` wrote, if `bytes` hold exactly one well-formed
    /// graph built with these settings.
    pub(crate) fn decode(
        bytes: &[u8],
        dimension: usize,
        m: usize,
        ef_construction: usize,
    ) -> Option<Graph> {
        let mut graph = Graph::new(dimension, m, ef_construction);
        let mut reader = Reader(bytes);
        let nodes = reader.u32()? as usize;
        let shape = [reader.u32()?, reader.u32()?, reader.u32()?].map(|v| v as usize);
        if shape != [graph.dimension, graph.m, graph.ef_construction] {
            return None;
        }
        let entry = reader.u32()?;
        graph.rng = reader.u64()?;
        graph.levels = reader.bytes(nodes)?.to_vec();
        if graph.levels.iter().any(|&level| level as usize > MAX_LEVEL) {
            return None;
        }
        graph.base = reader.words(nodes.checked_mul(2 * graph.m + 1)?)?;
        graph.upper = Vec::with_capacity(nodes);
        for &level in &graph.levels {
            graph
                .upper
                .push(reader.words(level as usize * (graph.m + 1))?);
        }
        if !reader.0.is_empty() {
            return None;
        }
        graph.entry = match entry {
            NO_ENTRY if nodes == 0 => None,
            entry if (entry as usize) < nodes => Some(entry),
            _ => return None,
        };
        for node in 0..nodes as u32 {
            for level in 0..=graph.levels[node as usize] as usize {
                let group = graph.link_group(node, level);
                let count = group[0] as usize;
                if count > graph.capacity(level)
                    || group[1..1 + count].iter().any(|&l| l as usize >= nodes)
                {
                    return None;
                }
            }
        }
        Some(graph)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{built, clustered, recall};
    use super::*;

    #[test]
    fn a_decoded_graph_answers_as_the_encoded_one_did() {
        let dimension = 16;
        let data = clustered(1500, dimension, 3);
        let queries = clustered(20, dimension, 4);
        let graph = built(&data, dimension, 8, 40);
        let mut bytes = Vec::new();
        graph.encode(&mut bytes);
        let decoded = Graph::decode(&bytes, dimension, 8, 40).expect("decodes");
        for query in queries.chunks(dimension) {
            assert_eq!(
                graph.search(&data, query, 10, 32),
                decoded.search(&data, query, 10, 32)
            );
        }
        assert!(recall(&decoded, &data, dimension, &queries, 32) >= 0.95);
        // Inserting continues as it would have: same levels, same links.
        let mut more = data.clone();
        more.extend(clustered(1, dimension, 5));
        let (mut a, mut b) = (graph, decoded);
        a.insert(&more);
        b.insert(&more);
        assert_eq!(a.levels, b.levels);
        assert_eq!(a.base, b.base);

        let mut empty = Vec::new();
        Graph::new(dimension, 8, 40).encode(&mut empty);
        assert_eq!(Graph::decode(&empty, dimension, 8, 40).unwrap().len(), 0);
    }

    #[test]
    fn refuses_damaged_or_foreign_bytes() {
        let dimension = 8;
        let data = clustered(200, dimension, 6);
        let graph = built(&data, dimension, 4, 20);
        let mut bytes = Vec::new();
        graph.encode(&mut bytes);
        assert!(Graph::decode(&bytes, dimension, 4, 20).is_some());
        assert!(Graph::decode(&bytes, dimension, 8, 20).is_none());
        assert!(Graph::decode(&bytes, 16, 4, 20).is_none());
        assert!(Graph::decode(&bytes[..bytes.len() - 1], dimension, 4, 20).is_none());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Graph::decode(&longer, dimension, 4, 20).is_none());
        // A link past the last node.
        let first_link = HEADER + 200 + 4;
        let mut wild = bytes.clone();
        wild[first_link..first_link + 4].copy_from_slice(&5000u32.to_le_bytes());
        assert!(Graph::decode(&wild, dimension, 4, 20).is_none());
        // A count over the level's capacity.
        let mut crowded = bytes;
        crowded[HEADER + 200..HEADER + 204].copy_from_slice(&9u32.to_le_bytes());
        assert!(Graph::decode(&crowded, dimension, 4, 20).is_none());
    }
}

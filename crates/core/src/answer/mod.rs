//! Turning retrieved passages into an answer: the prompt for generative
//! models and the extractive answerer that needs no model at all.

pub mod extractive;
pub mod prompt;
pub mod verify;

pub use extractive::ExtractiveAnswerer;
pub use prompt::{SYSTEM_PROMPT, build_rag_request};
pub use verify::{CitationCheck, CitationReport, CitedPassage, Verification, verify_citations};

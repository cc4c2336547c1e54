//! Conversation memory as the model sees it: a sliding window over the
//! stored messages that never splits a tool use from its result and always
//! starts on a question, and head-and-tail truncation of tool output.

use crate::chat::{ContentBlock, Message, Role};

/// Whether a message is a user's question rather than tool results (which
/// Converse also sends with the user role).
pub fn is_question(message: &Message) -> bool {
    message.role == Role::User
        && message
            .content
            .iter()
            .any(|b| matches!(b, ContentBlock::Text { .. }))
        && !message
            .content
            .iter()
            .any(|b| matches!(b, ContentBlock::ToolResult { .. }))
}

/// The latest messages, at most `limit`, starting on a question. Cutting
/// before a question keeps every tool use with its result, because a
/// turn's tool exchanges all come after its question.
pub fn window(mut messages: Vec<Message>, limit: usize) -> Vec<Message> {
    if messages.len() > limit {
        messages.drain(..messages.len() - limit);
    }
    match messages.iter().position(is_question) {
        Some(start) => messages.split_off(start),
        None => Vec::new(),
    }
}

/// Keeps the head and the tail of an oversized text, where tool output
/// usually carries what matters (the first results, the closing summary),
/// and says how much was cut.
pub fn truncate_head_tail(text: &str, max_chars: usize) -> String {
    let total = text.chars().count();
    if total <= max_chars {
        return text.to_string();
    }
    let tail = max_chars / 4;
    let head = max_chars - tail;
    let mut out: String = text.chars().take(head).collect();
    out.push_str(&format!(
        "\n[... {} characters omitted ...]\n",
        total - head - tail
    ));
    out.extend(text.chars().skip(total - tail));
    out
}

/// Shrinks every tool result in `messages` to `max_chars`.
pub fn shrink_tool_results(messages: &mut [Message], max_chars: usize) {
    for message in messages {
        for block in &mut message.content {
            if let ContentBlock::ToolResult { content, .. } = block {
                *content = truncate_head_tail(content, max_chars);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::ToolResultStatus;

    fn tool_use(id: &str) -> Message {
        Message {
            role: Role::Assistant,
            content: vec![ContentBlock::ToolUse {
                tool_use_id: id.into(),
                name: "vector_search".into(),
                input: serde_json::json!({"query": "q"}),
            }],
        }
    }

    fn tool_result(id: &str) -> Message {
        Message {
            role: Role::User,
            content: vec![ContentBlock::ToolResult {
                tool_use_id: id.into(),
                status: ToolResultStatus::Success,
                content: "r".into(),
            }],
        }
    }

    #[test]
    fn window_starts_on_a_question_and_keeps_tool_pairs() {
        let messages = vec![
            Message::user_text("q1"),
            tool_use("a"),
            tool_result("a"),
            Message::assistant_text("a1"),
            Message::user_text("q2"),
            tool_use("b"),
            tool_result("b"),
            Message::assistant_text("a2"),
        ];
        // A window of 6 would start on tool_result("a"), orphaning it.
        let w = window(messages.clone(), 6);
        assert_eq!(w, messages[4..].to_vec());
        // A window of 7 would start on tool_use("a").
        assert_eq!(window(messages.clone(), 7), messages[4..].to_vec());
        assert_eq!(window(messages.clone(), 8), messages);
        assert_eq!(window(messages.clone(), 3), Vec::<Message>::new());
        // Every tool use in a window has its result right after it.
        for limit in 0..=8 {
            let w = window(messages.clone(), limit);
            assert!(w.first().is_none_or(is_question));
            for (i, m) in w.iter().enumerate() {
                if m.content
                    .iter()
                    .any(|b| matches!(b, ContentBlock::ToolUse { .. }))
                {
                    assert!(w.get(i + 1).is_some_and(|next| {
                        next.content
                            .iter()
                            .any(|b| matches!(b, ContentBlock::ToolResult { .. }))
                    }));
                }
            }
        }
    }

    #[test]
    fn truncation_keeps_head_and_tail() {
        let text: String = (0..1000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let cut = truncate_head_tail(&text, 100);
        assert!(cut.starts_with(&text[..75]));
        assert!(cut.ends_with(&text[975..]));
        assert!(cut.contains("[... 900 characters omitted ...]"));
        assert_eq!(truncate_head_tail("short", 100), "short");
    }
}

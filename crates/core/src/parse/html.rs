//! HTML to text that keeps the main content only: navigation, sidebars,
//! scripts and styles never reach a chunk. The text comes in parts, one per
//! heading, each knowing its heading path, so chunks stay within a section
//! and say which one they come from.

use std::cell::{Cell, RefCell};

use ego_tree::NodeRef;
use html5ever::tokenizer::states::RawKind;
use html5ever::tokenizer::{
    BufferQueue, TagKind, Token, TokenSink, TokenSinkResult, Tokenizer, TokenizerOpts,
};
use html5ever::{LocalName, tendril::StrTendril};
use scraper::node::Node;
use scraper::{ElementRef, Html, Selector};

use super::layout::{Part, split_at_headings};
use crate::error::ParseError;

/// Elements whose whole subtree is page furniture, never content.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "nav", "aside", "form", "iframe", "svg", "template", "button",
    "select", "input", "textarea", "head", "canvas", "object", "embed",
];

/// Skipped only when we fall back to the whole body; inside `<main>` or an
/// `<article>` a header is usually the article's own heading.
const PAGE_CHROME: &[&str] = &["header", "footer"];

const BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "li",
    "dl",
    "dt",
    "dd",
    "table",
    "thead",
    "tbody",
    "tr",
    "blockquote",
    "figure",
    "figcaption",
    "pre",
    "hr",
    "details",
    "summary",
    "address",
];

/// How deeply elements may nest before a page is refused. Browsers stop
/// nesting at 512 (Chromium appends deeper elements as siblings); real pages
/// stay far below that. The limit exists because html5ever's tree builder
/// looks through the stack of open elements for every tag, so its time
/// grows with the square of the depth (30,000 levels took 8.6 s).
pub const MAX_HTML_NESTING: usize = 1024;

/// The title and the main content's text of a page, from one parse.
pub fn html_title_and_text(html: &str) -> Result<(Option<String>, String), ParseError> {
    let (title, parts) = html_title_and_parts(html)?;
    let text = parts
        .into_iter()
        .map(|part| part.text)
        .collect::<Vec<_>>()
        .join("\n\n");
    Ok((title, text))
}

/// The title and the main content of a page as parts, a part for the text
/// before the first heading (if any) and one from each heading to the
/// next, each located by its heading path.
pub(crate) fn html_title_and_parts(html: &str) -> Result<(Option<String>, Vec<Part>), ParseError> {
    check_nesting(html)?;
    let doc = Html::parse_document(html);
    let title = title_of(&doc);
    let (root, is_main) = main_root(&doc);
    let mut out = TextBuilder::default();
    walk(root, is_main, &mut out);
    Ok((title, out.into_parts()))
}

/// The document's title: `<title>`, else the first `<h1>`.
pub fn html_title(html: &str) -> Option<String> {
    check_nesting(html).ok()?;
    title_of(&Html::parse_document(html))
}

/// The text of the page's main content with paragraph breaks; a page nested
/// deeper than [`MAX_HTML_NESTING`] gives no text.
pub fn html_to_text(html: &str) -> String {
    html_title_and_text(html)
        .map(|(_, text)| text)
        .unwrap_or_default()
}

fn title_of(doc: &Html) -> Option<String> {
    for css in ["title", "h1"] {
        let selector = Selector::parse(css).expect("static selector");
        if let Some(el) = doc.select(&selector).next() {
            let text = collapse_whitespace(&el.text().collect::<String>());
            if !text.is_empty() {
                return Some(text);
            }
        }
    }
    None
}

/// Measures how deeply the page nests with html5ever's tokenizer alone,
/// which takes linear time, before the tree builder is given the page.
fn check_nesting(html: &str) -> Result<(), ParseError> {
    let sink = NestingSink::default();
    let tokenizer = Tokenizer::new(sink, TokenizerOpts::default());
    let input = BufferQueue::default();
    input.push_back(StrTendril::from_slice(html));
    // The sink never asks to run a script, so one feed takes all input.
    let _ = tokenizer.feed(&input);
    tokenizer.end();
    if tokenizer.sink.deepest.get() > MAX_HTML_NESTING {
        return Err(ParseError::TooComplex(format!(
            "HTML elements nest more than {MAX_HTML_NESTING} deep"
        )));
    }
    Ok(())
}

/// Elements that never have content, so never open a level.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr", "param", "keygen",
];

/// Elements a second start tag of the same name closes implicitly.
const SELF_CLOSING_SIBLINGS: &[&str] = &[
    "p", "li", "dt", "dd", "option", "optgroup", "tr", "td", "th", "rt", "rp", "thead", "tbody",
];

/// Follows the open elements the way the tree builder would, closely enough
/// to bound its work: end tags close up to their match, void elements and
/// repeated list items or paragraphs do not nest. It stops counting once the
/// limit is passed, so a hostile page costs at most the limit per tag.
#[derive(Default)]
struct NestingSink {
    open: RefCell<Vec<LocalName>>,
    deepest: Cell<usize>,
}

impl TokenSink for NestingSink {
    type Handle = ();

    fn process_token(&self, token: Token, _line: u64) -> TokenSinkResult<()> {
        let Token::TagToken(tag) = token else {
            return TokenSinkResult::Continue;
        };
        let mut open = self.open.borrow_mut();
        let name: &str = &tag.name;
        match tag.kind {
            TagKind::StartTag => {
                if tag.self_closing || VOID.contains(&name) {
                    return TokenSinkResult::Continue;
                }
                if SELF_CLOSING_SIBLINGS.contains(&name) && open.last() == Some(&tag.name) {
                    open.pop();
                }
                if self.deepest.get() <= MAX_HTML_NESTING {
                    open.push(tag.name.clone());
                    self.deepest.set(self.deepest.get().max(open.len()));
                }
                // Script, style and the like hold text, not tags; the tree
                // builder switches the tokenizer the same way.
                match name {
                    "script" => TokenSinkResult::RawData(RawKind::ScriptData),
                    "style" | "xmp" | "iframe" | "noembed" | "noframes" | "noscript" => {
                        TokenSinkResult::RawData(RawKind::Rawtext)
                    }
                    "textarea" | "title" => TokenSinkResult::RawData(RawKind::Rcdata),
                    "plaintext" => TokenSinkResult::Plaintext,
                    _ => TokenSinkResult::Continue,
                }
            }
            TagKind::EndTag => {
                if let Some(at) = open.iter().rposition(|n| *n == tag.name) {
                    open.truncate(at);
                }
                TokenSinkResult::Continue
            }
        }
    }
}

fn main_root(doc: &Html) -> (ElementRef<'_>, bool) {
    for css in ["main", "article", "[role=main]", "#content", "#main"] {
        let selector = Selector::parse(css).expect("static selector");
        let mut candidates = doc.select(&selector);
        if let Some(el) = candidates.next()
            && el.text().any(|t| !t.trim().is_empty())
        {
            return (el, true);
        }
    }
    let body = Selector::parse("body").expect("static selector");
    match doc.select(&body).next() {
        Some(el) => (el, false),
        None => (doc.root_element(), false),
    }
}

/// What to emit once an element's children are done.
enum Step<'a> {
    Visit(NodeRef<'a, Node>),
    LineBreak,
    ParagraphBreak,
    CellEnd,
}

/// Walks the tree with an explicit stack, so no page can exhaust the
/// thread's stack however deeply it nests.
fn walk(root: ElementRef<'_>, inside_main: bool, out: &mut TextBuilder) {
    let mut stack: Vec<Step<'_>> = root.children().rev().map(Step::Visit).collect();
    while let Some(step) = stack.pop() {
        let node = match step {
            Step::Visit(node) => node,
            Step::LineBreak => {
                out.line_break();
                continue;
            }
            Step::ParagraphBreak => {
                out.paragraph_break();
                continue;
            }
            Step::CellEnd => {
                out.push_text(" |");
                continue;
            }
        };
        let el = match node.value() {
            Node::Text(text) => {
                out.push_text(text);
                continue;
            }
            Node::Element(el) => el,
            _ => continue,
        };
        let name = el.name();
        if SKIPPED.contains(&name) || (!inside_main && PAGE_CHROME.contains(&name)) {
            continue;
        }
        if el.attr("hidden").is_some() || el.attr("aria-hidden") == Some("true") {
            continue;
        }
        let Some(child_el) = ElementRef::wrap(node) else {
            continue;
        };
        let after = match name {
            "br" => {
                out.line_break();
                continue;
            }
            "pre" => {
                out.paragraph_break();
                out.push_preformatted(&child_el.text().collect::<String>());
                out.paragraph_break();
                continue;
            }
            "li" => {
                out.line_break();
                out.push_text("- ");
                Some(Step::LineBreak)
            }
            "td" | "th" => {
                out.push_text(" ");
                Some(Step::CellEnd)
            }
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                out.paragraph_break();
                let level = name.as_bytes()[1] - b'0';
                out.start_section(
                    level,
                    collapse_whitespace(&child_el.text().collect::<String>()),
                );
                Some(Step::ParagraphBreak)
            }
            _ if BLOCKS.contains(&name) => {
                out.paragraph_break();
                Some(Step::ParagraphBreak)
            }
            _ => None,
        };
        stack.extend(after);
        stack.extend(node.children().rev().map(Step::Visit));
    }
}

/// Collapses inline whitespace the way a browser does and records pending
/// breaks so that nested blocks produce one blank line, not several.
#[derive(Default)]
struct TextBuilder {
    out: String,
    pending: Break,
    /// A heading seen but not yet written: its section starts where its
    /// text does.
    pending_heading: Option<(u8, String)>,
    /// Where each heading's section starts in `out`, with its level and
    /// text.
    headings: Vec<(usize, u8, String)>,
}

#[derive(Default, PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum Break {
    #[default]
    None,
    Space,
    Line,
    Paragraph,
}

impl TextBuilder {
    fn push_text(&mut self, text: &str) {
        if text.starts_with(char::is_whitespace) {
            self.want(Break::Space);
        }
        let mut any = false;
        for word in text.split_whitespace() {
            if any {
                self.want(Break::Space);
            }
            self.flush();
            self.out.push_str(word);
            any = true;
        }
        if any && text.ends_with(char::is_whitespace) {
            self.want(Break::Space);
        }
    }

    fn push_preformatted(&mut self, text: &str) {
        let text = text.trim_matches('\n');
        if text.trim().is_empty() {
            return;
        }
        self.flush();
        self.out.push_str(text);
    }

    fn line_break(&mut self) {
        self.want(Break::Line);
    }

    fn paragraph_break(&mut self) {
        self.want(Break::Paragraph);
    }

    fn start_section(&mut self, level: u8, heading: String) {
        self.pending_heading = Some((level, heading));
    }

    fn want(&mut self, b: Break) {
        if b > self.pending {
            self.pending = b;
        }
    }

    fn flush(&mut self) {
        if !self.out.is_empty() {
            match self.pending {
                Break::None => {}
                Break::Space => self.out.push(' '),
                Break::Line => self.out.push('\n'),
                Break::Paragraph => self.out.push_str("\n\n"),
            }
        }
        self.pending = Break::None;
        if let Some((level, heading)) = self.pending_heading.take() {
            self.headings.push((self.out.len(), level, heading));
        }
    }

    fn into_parts(self) -> Vec<Part> {
        split_at_headings(&self.out, self.headings)
    }
}

fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<!DOCTYPE html><html><head><title>Errors - Book</title>
        <style>.x{color:red}</style><script>var toc = "Chapter list";</script></head>
        <body><nav id="sidebar"><ol><li>Chapter 1</li><li>Chapter 2</li></ol></nav>
        <header>Site header</header>
        <main><h1>Recoverable Errors</h1><p>Most errors are <code>Result</code>
        values.</p><pre><code>fn main() {
    let x = 1;
}</code></pre><ul><li>one</li><li>two</li></ul></main>
        <footer>Footer links</footer></body></html>"#;

    #[test]
    fn keeps_main_content_only() {
        let text = html_to_text(PAGE);
        assert!(
            text.starts_with("Recoverable Errors\n\nMost errors are Result values."),
            "{text}"
        );
        assert!(text.contains("fn main() {\n    let x = 1;\n}"), "{text}");
        assert!(text.contains("- one\n- two"), "{text}");
        for furniture in ["Chapter 1", "toc", "color:red", "Site header", "Footer"] {
            assert!(!text.contains(furniture), "{furniture} leaked: {text}");
        }
    }

    #[test]
    fn falls_back_to_body_without_chrome() {
        let text = html_to_text(
            "<html><body><header>Top</header><nav>Menu</nav><p>Body text</p><footer>End</footer></body></html>",
        );
        assert_eq!(text, "Body text");
    }

    #[test]
    fn deep_nesting_is_refused_quickly_and_moderate_nesting_is_read() {
        for depth in [MAX_HTML_NESTING + 1, 10_000, 100_000] {
            let html = format!("<body>{}x{}", "<div>".repeat(depth), "</div>".repeat(depth));
            let started = std::time::Instant::now();
            assert!(matches!(
                html_title_and_text(&html),
                Err(ParseError::TooComplex(_))
            ));
            assert!(
                started.elapsed().as_secs() < 5,
                "{depth}: {:?}",
                started.elapsed()
            );
        }
        // Just under the limit, and with the walk on a small stack: the
        // walk itself must not recurse.
        let depth = MAX_HTML_NESTING - 10;
        let html = format!(
            "<body><p>{}deep text{}</p>",
            "<span><div>".repeat(depth / 2),
            "</div></span>".repeat(depth / 2)
        );
        let text = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || html_title_and_text(&html).unwrap().1)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(text, "deep text");
    }

    #[test]
    fn repeated_paragraphs_and_list_items_do_not_count_as_nesting() {
        let html = format!(
            "<body><ul>{}</ul>{}",
            "<li>item".repeat(5000),
            "<p>para".repeat(5000)
        );
        let (_, text) = html_title_and_text(&html).unwrap();
        assert!(text.starts_with("- item\n- item"), "{}", &text[..40]);
        // Script text is not markup, however it looks.
        let script = format!("<body><script>{}</script><p>after", "<div>".repeat(5000));
        assert_eq!(html_title_and_text(&script).unwrap().1, "after");
    }

    #[test]
    fn title_from_title_element() {
        assert_eq!(html_title(PAGE).as_deref(), Some("Errors - Book"));
    }
}

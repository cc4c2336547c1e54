//! HTML to text that keeps the main content only: navigation, sidebars,
//! scripts and styles never reach a chunk.

use scraper::node::Node;
use scraper::{ElementRef, Html, Selector};

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

/// The document's title: `<title>`, else the first `<h1>`.
pub fn html_title(html: &str) -> Option<String> {
    let doc = Html::parse_document(html);
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

/// The text of the page's main content with paragraph breaks.
pub fn html_to_text(html: &str) -> String {
    let doc = Html::parse_document(html);
    let (root, is_main) = main_root(&doc);
    let mut out = TextBuilder::default();
    walk(root, is_main, &mut out);
    out.finish()
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

fn walk(element: ElementRef<'_>, inside_main: bool, out: &mut TextBuilder) {
    for child in element.children() {
        match child.value() {
            Node::Text(text) => out.push_text(text),
            Node::Element(el) => {
                let name = el.name();
                if SKIPPED.contains(&name) || (!inside_main && PAGE_CHROME.contains(&name)) {
                    continue;
                }
                if el.attr("hidden").is_some() || el.attr("aria-hidden") == Some("true") {
                    continue;
                }
                let Some(child_el) = ElementRef::wrap(child) else {
                    continue;
                };
                match name {
                    "br" => out.line_break(),
                    "pre" => {
                        out.paragraph_break();
                        out.push_preformatted(&child_el.text().collect::<String>());
                        out.paragraph_break();
                    }
                    "li" => {
                        out.line_break();
                        out.push_text("- ");
                        walk(child_el, inside_main, out);
                        out.line_break();
                    }
                    "td" | "th" => {
                        out.push_text(" ");
                        walk(child_el, inside_main, out);
                        out.push_text(" |");
                    }
                    _ if BLOCKS.contains(&name) => {
                        out.paragraph_break();
                        walk(child_el, inside_main, out);
                        out.paragraph_break();
                    }
                    _ => walk(child_el, inside_main, out),
                }
            }
            _ => {}
        }
    }
}

/// Collapses inline whitespace the way a browser does and records pending
/// breaks so that nested blocks produce one blank line, not several.
#[derive(Default)]
struct TextBuilder {
    out: String,
    pending: Break,
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
    }

    fn finish(self) -> String {
        self.out
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
    fn title_from_title_element() {
        assert_eq!(html_title(PAGE).as_deref(), Some("Errors - Book"));
    }
}

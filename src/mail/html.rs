//! HTML-only bodies to readable text, in bounded time and memory.
//!
//! Ordinary HTML goes through html2text, a real renderer (lists, tables, links). Its cost grows
//! with the square of the element nesting depth (100,000 nested `<div>`s, a 1.1 MB mail, took
//! 291 s and 148 MB; 32,000 took 30 s in a debug build) and its DOM takes about 200 bytes of
//! memory per byte of HTML. So HTML nested deeper than [`MAX_RENDER_DEPTH`] or larger than
//! [`MAX_RENDER_BYTES`] (and HTML the renderer fails on) is not rendered: a crude, linear tag
//! strip keeps its text readable instead, and [`Text::fallback`] says so, for the agents.
//!
//! Pure: no I/O. The depth is estimated from the tags in one linear scan, before any parsing.

/// Deeper HTML (elements open at once, estimated from the tags) is stripped, not rendered.
/// Real mail rarely nests more than ~40 levels (a long thread of quoted replies); 256 levels
/// render in milliseconds.
pub const MAX_RENDER_DEPTH: usize = 256;

/// Larger HTML is stripped, not rendered: html2text's DOM of 1 MiB of HTML takes ~200 MB.
pub const MAX_RENDER_BYTES: usize = 1024 * 1024;

/// An HTML body as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text {
    pub text: String,
    /// Why the markup was stripped instead of rendered, when it was; shown to agents.
    pub fallback: Option<String>,
}

/// Renders `html` to text `width` columns wide, or strips its tags when rendering it would
/// cost too much (see the module documentation).
pub fn to_text(html: &str, width: usize) -> Text {
    let depth = nesting_depth(html);
    let why = if depth > MAX_RENDER_DEPTH {
        format!("it nests {depth} elements deep, over the {MAX_RENDER_DEPTH} supportd renders")
    } else if html.len() > MAX_RENDER_BYTES {
        format!(
            "it is {} bytes, over the {MAX_RENDER_BYTES} bytes supportd renders",
            html.len()
        )
    } else {
        match html2text::from_read(html.as_bytes(), width) {
            Ok(text) => {
                return Text {
                    text,
                    fallback: None,
                }
            }
            Err(e) => format!("the HTML renderer failed on it ({e})"),
        }
    };
    Text {
        text: strip_tags(html),
        fallback: Some(format!(
            "HTML body shown as plain text with its markup stripped, not rendered: {why}"
        )),
    }
}

/// The deepest nesting of elements in `html`, estimated from its tags: every start tag opens
/// a level and every end tag closes one, except void elements (`<br>`), self-closed tags and
/// elements whose end tag HTML lets one omit (`<p>`, `<li>`, `<td>`, ...: a parser closes
/// them itself, so sloppy mail with a thousand unclosed `<p>`s is not mistaken for deep).
pub fn nesting_depth(html: &str) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    scan(html, |piece| match piece {
        Piece::Open { name, self_closing } if !self_closing && nests(name) => {
            depth += 1;
            deepest = deepest.max(depth);
        }
        Piece::Close { name } if nests(name) => depth = depth.saturating_sub(1),
        _ => {}
    });
    deepest
}

/// Readable text from `html` in one linear pass: tags dropped (block elements become line
/// breaks, list items "- "), `<script>`, `<style>`, `<title>` and comments dropped, common
/// character references decoded, runs of spaces collapsed and empty lines dropped.
pub fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    scan(html, |piece| match piece {
        Piece::Text(t) => decode_entities_into(t, &mut out),
        Piece::Open { name, .. } if name.eq_ignore_ascii_case("li") => out.push_str("\n- "),
        Piece::Open { name, .. } | Piece::Close { name } if is_block(name) => out.push('\n'),
        Piece::Open { name, .. } if is_cell(name) => out.push(' '),
        _ => {}
    });
    tidy(&out)
}

/// One piece of HTML as the scanner sees it.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Open { name: &'a str, self_closing: bool },
    Close { name: &'a str },
}

/// Elements whose content is not shown (and may hold `<` that starts no tag): skipped to
/// their end tag.
const RAW_TEXT: &[&str] = &["script", "style", "title"];

/// Walks `html` once, front to back, calling `on` for each text run and tag. Comments,
/// doctypes and processing instructions are skipped; a `<` that starts no tag is text. Every
/// index it slices at is an ASCII byte or an end, so slices fall on character boundaries.
fn scan<'a>(html: &'a str, mut on: impl FnMut(Piece<'a>)) {
    let b = html.as_bytes();
    let mut text_start = 0;
    let mut i = 0;
    let emit_text = |from: usize, to: usize, on: &mut dyn FnMut(Piece<'a>)| {
        if from < to {
            on(Piece::Text(&html[from..to]));
        }
    };
    while let Some(off) = b
        .get(i..)
        .and_then(|rest| rest.iter().position(|&c| c == b'<'))
    {
        let lt = i + off;
        let rest = &b[lt + 1..];
        if rest.starts_with(b"!--") {
            emit_text(text_start, lt, &mut on);
            i = find(b, lt + 4, b"-->").map_or(b.len(), |e| e + 3);
            text_start = i;
            continue;
        }
        if rest.first().is_some_and(|&c| c == b'!' || c == b'?') {
            emit_text(text_start, lt, &mut on);
            i = find(b, lt + 1, b">").map_or(b.len(), |e| e + 1);
            text_start = i;
            continue;
        }
        let closing = rest.first() == Some(&b'/');
        let name_start = lt + 1 + usize::from(closing);
        if !b.get(name_start).is_some_and(u8::is_ascii_alphabetic) {
            // A literal `<` ("a < b"): part of the text.
            i = lt + 1;
            continue;
        }
        emit_text(text_start, lt, &mut on);
        let name_end = b[name_start..]
            .iter()
            .position(|&c| !(c.is_ascii_alphanumeric() || c == b'-' || c == b':'))
            .map_or(b.len(), |n| name_start + n);
        let name = &html[name_start..name_end];
        // The tag ends at the first `>` outside a quoted attribute value.
        let mut quote = None;
        let mut end = name_end;
        while end < b.len() {
            match (quote, b[end]) {
                (None, b'"' | b'\'') => quote = Some(b[end]),
                (Some(q), c) if c == q => quote = None,
                (None, b'>') => break,
                _ => {}
            }
            end += 1;
        }
        if closing {
            on(Piece::Close { name });
        } else {
            let self_closing = end > name_end && b.get(end - 1) == Some(&b'/');
            on(Piece::Open { name, self_closing });
        }
        i = (end + 1).min(b.len());
        if !closing && RAW_TEXT.iter().any(|r| name.eq_ignore_ascii_case(r)) {
            // Skip the content up to this element's end tag (which is then scanned as a tag).
            i = find_end_tag(b, i, name.as_bytes()).unwrap_or(b.len());
        }
        text_start = i;
    }
    emit_text(text_start, b.len(), &mut on);
}

/// The first `needle` in `b` at or after `from`.
fn find(b: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    b.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// The first `</name` (any case) in `b` at or after `from`.
fn find_end_tag(b: &[u8], from: usize, name: &[u8]) -> Option<usize> {
    let mut i = from;
    while let Some(lt) = find(b, i, b"</") {
        let after = lt + 2;
        if b.get(after..after + name.len())
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
        {
            return Some(lt);
        }
        i = after;
    }
    None
}

/// Void elements (never have content) and elements whose end tag may be omitted.
fn nests(name: &str) -> bool {
    const FLAT: &[&str] = &[
        // void
        "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
        "source", "track", "wbr", "keygen", "basefont", "frame",
        "isindex", // optional end tag
        "p", "li", "dt", "dd", "tr", "td", "th", "thead", "tbody", "tfoot", "option", "optgroup",
        "colgroup", "caption", "rb", "rt", "rp", "rtc", "html", "head", "body",
    ];
    !FLAT.iter().any(|f| name.eq_ignore_ascii_case(f))
}

fn is_block(name: &str) -> bool {
    const BLOCK: &[&str] = &[
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "dd",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "main",
        "nav",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tr",
        "ul",
    ];
    BLOCK.iter().any(|b| name.eq_ignore_ascii_case(b))
}

fn is_cell(name: &str) -> bool {
    name.eq_ignore_ascii_case("td") || name.eq_ignore_ascii_case("th")
}

/// Appends `text` with its character references decoded: the named ones mail uses most, and
/// every numeric one that is a valid, printable character. Others stay as written.
fn decode_entities_into(text: &str, out: &mut String) {
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        // A reference is short: look for its `;` within 10 bytes.
        let semi = after.bytes().take(10).position(|c| c == b';');
        let decoded = semi.and_then(|s| decode_entity(&after[..s]).map(|c| (c, s)));
        match decoded {
            Some((c, s)) => {
                out.push(c);
                rest = &after[s + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
}

fn decode_entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        let c = char::from_u32(code)?;
        return (!c.is_control() || c == '\n' || c == '\t').then_some(c);
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        "ndash" => '–',
        "mdash" => '—',
        "hellip" => '…',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "bull" => '•',
        "middot" => '·',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "euro" => '€',
        "pound" => '£',
        "deg" => '°',
        _ => return None,
    })
}

/// Collapses runs of spaces within lines, trims every line, and drops empty lines (the strip
/// makes one for every nested block; it keeps no paragraph spacing).
fn tidy(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for line in s.lines() {
        let mut words = line.split_whitespace();
        let Some(first) = words.next() else {
            continue;
        };
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(first);
        for w in words {
            out.push(' ');
            out.push_str(w);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_html_is_rendered() {
        let t = to_text("<p>Pages are <b>stuck</b></p><ul><li>one</li></ul>", 100);
        assert_eq!(t.fallback, None);
        assert!(t.text.contains("Pages are"), "{}", t.text);
        assert!(t.text.contains("one"), "{}", t.text);
    }

    #[test]
    fn deep_nesting_is_stripped_with_a_note_in_linear_time() {
        let n = 100_000;
        let html = format!(
            "<html><body>{}Help, pages are stuck &amp; queued{}</body></html>",
            "<div>".repeat(n),
            "</div>".repeat(n)
        );
        let started = std::time::Instant::now();
        let t = to_text(&html, 100);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(t.text, "Help, pages are stuck & queued");
        let note = t.fallback.expect("a note");
        assert!(note.contains("nests 100000 elements deep"), "{note}");
        assert!(note.contains("markup stripped"), "{note}");
    }

    #[test]
    fn large_html_is_stripped_with_a_note() {
        let html = format!("<p>{}</p>", "word ".repeat(MAX_RENDER_BYTES / 5 + 1));
        let t = to_text(&html, 100);
        assert!(t.fallback.is_some_and(|n| n.contains("bytes")));
        assert!(t.text.starts_with("word word"));
    }

    #[test]
    fn depth_ignores_void_self_closed_and_optional_end_tags() {
        assert_eq!(nesting_depth("<div><div><span>x</span></div></div>"), 3);
        assert_eq!(nesting_depth(&"<p>para<br><img src=x>".repeat(5_000)), 0);
        assert_eq!(nesting_depth(&"<li>item".repeat(5_000)), 0);
        assert_eq!(nesting_depth("<div/><div/><DIV>x</Div>"), 1);
        // Unclosed divs nest in every browser.
        assert_eq!(nesting_depth(&"<div>".repeat(300)), 300);
        // Tags inside scripts and comments are not tags.
        assert_eq!(
            nesting_depth("<script>if (a<b) { s = '<div><div>'; }</script><!-- <div> -->"),
            1
        );
    }

    #[test]
    fn strip_keeps_readable_text() {
        let html = "<html><head><title>T</title><style>p { color: red }</style></head>\
            <body><h1>Pager&nbsp;outage</h1><p>Since 9:00 &ndash; all wards.<br>Call &#x2706; &#43;1 555&nbsp;0100</p>\
            <ul><li>ward 3</li><li>ward 5</li></ul><table><tr><td>a</td><td>b</td></tr></table>\
            <script>alert('<p>x</p>')</script><p>1 &lt; 2 &amp;&amp; x < y &unknown; &#0; &#xD800;</p></body></html>";
        assert_eq!(
            strip_tags(html),
            "Pager outage\nSince 9:00 – all wards.\nCall ✆ +1 555 0100\n- ward 3\n- ward 5\na b\n1 < 2 && x < y &unknown; &#0; &#xD800;"
        );
    }

    #[test]
    fn quoted_attributes_and_unterminated_markup() {
        assert_eq!(
            strip_tags("<a title=\"x > y\" href='>'>link</a> after"),
            "link after"
        );
        assert_eq!(strip_tags("text <div class=\"never closed"), "text");
        assert_eq!(strip_tags("a <!-- never closed"), "a");
        assert_eq!(strip_tags("<script>never closed"), "");
        assert_eq!(strip_tags("x < y and y > z"), "x < y and y > z");
        assert_eq!(strip_tags("é<b>ü</b>ß"), "éüß");
    }
}

//! Text processing of kernel sources shared by `build.rs` (which includes this file with `#[path]`) and
//! the harness tests: finding `extern "C" __global__` entry points and removing `extern "C"`.
//!
//! An entry point is `extern "C"`, then any identifiers (each optionally followed by a parenthesized
//! group, like `__launch_bounds__(256, 2)`) among which `__global__` and then `void`, then the kernel's
//! name and `(`. `build.rs` runs this on the preprocessed source (restricted to the lines that came from
//! `kernels/`, see [`lines_from`]), so entry points that macros stamp out are found as well; comments are
//! skipped either way. `extern "C" { ... }` blocks are rejected.

/// The lines of preprocessor output (with GCC linemarkers `# <line> "<file>" <flags>`) that come from
/// files whose name starts with `prefix`, e.g. a kernel family but not the system headers it includes.
pub fn lines_from(preprocessed: &str, prefix: &str) -> String {
    let mut keep = false;
    let mut out = String::new();
    for line in preprocessed.lines() {
        let marker = line.strip_prefix("# ").filter(|rest| rest.starts_with(|c: char| c.is_ascii_digit()));
        if let Some(rest) = marker {
            keep = rest.split('"').nth(1).is_some_and(|file| file.starts_with(prefix));
        } else if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Blanks `#pragma once` lines (they warn in a main file), keeping line numbers.
pub fn strip_pragma_once(s: &str) -> String {
    s.lines().map(|l| if l.trim() == "#pragma once" { "" } else { l }).collect::<Vec<_>>().join("\n")
}

/// Replaces every `extern "C"` (any whitespace between, line continuations included) with spaces,
/// keeping newlines so that line numbers do not move.
pub fn strip_extern_c(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = b.to_vec();
    let mut i = 0;
    while let Some(pos) = s[i..].find("extern") {
        let start = i + pos;
        let mut j = start + "extern".len();
        i = j;
        let boundary_before = start == 0 || !is_ident_byte(b[start - 1]);
        if !boundary_before || (j < b.len() && is_ident_byte(b[j])) {
            continue;
        }
        while j < b.len() && (b[j].is_ascii_whitespace() || b[j] == b'\\') {
            j += 1;
        }
        if s[j..].starts_with("\"C\"") {
            let end = j + 3;
            for byte in &mut out[start..end] {
                if *byte != b'\n' {
                    *byte = b' ';
                }
            }
            i = end;
        }
    }
    String::from_utf8(out).expect("only ASCII bytes were replaced")
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

#[derive(Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(char),
}

/// Splits C++ source into identifiers (numbers included), string literals and punctuation,
/// skipping comments and character literals.
fn tokenize(s: &str) -> Vec<Tok> {
    let c: Vec<char> = s.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            i += 2;
            while i + 1 < c.len() && !(c[i] == '*' && c[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if ch == '"' || ch == '\'' {
            let mut j = i + 1;
            let mut lit = String::new();
            while j < c.len() && c[j] != ch {
                if c[j] == '\\' {
                    j += 1;
                }
                if j < c.len() {
                    lit.push(c[j]);
                }
                j += 1;
            }
            if ch == '"' {
                toks.push(Tok::Str(lit));
            }
            i = j + 1;
        } else if ch.is_alphanumeric() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            toks.push(Tok::Ident(c[start..i].iter().collect()));
        } else {
            toks.push(Tok::Punct(ch));
            i += 1;
        }
    }
    toks
}

/// Index just past the parenthesized group starting at `toks[i]` (which must be `(`).
fn skip_parens(toks: &[Tok], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < toks.len() {
        match toks[i] {
            Tok::Punct('(') => depth += 1,
            Tok::Punct(')') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// Names of `extern "C" ... __global__ ... void name(` declarations, deduplicated, in order.
pub fn scan_entry_points(text: &str) -> Result<Vec<String>, String> {
    let toks = tokenize(text);
    let mut names: Vec<String> = Vec::new();
    let is = |i: usize, t: &Tok| toks.get(i) == Some(t);
    for i in 0..toks.len() {
        if !(is(i, &Tok::Ident("extern".into())) && is(i + 1, &Tok::Str("C".into()))) {
            continue;
        }
        if is(i + 2, &Tok::Punct('{')) {
            return Err("`extern \"C\" { ... }` blocks are not supported; \
                        declare each entry point as `extern \"C\" __global__ void name(...)`"
                .into());
        }
        let (mut j, mut global, mut void) = (i + 2, false, false);
        while let Some(Tok::Ident(word)) = toks.get(j) {
            let call = is(j + 1, &Tok::Punct('('));
            match word.as_str() {
                "__global__" => global = true,
                "void" => void = true,
                _ if call && void && word != "__launch_bounds__" => {
                    if global && !names.contains(word) {
                        names.push(word.clone());
                    }
                    break;
                }
                _ => {}
            }
            j = if call { skip_parens(&toks, j + 1) } else { j + 1 };
        }
    }
    Ok(names)
}

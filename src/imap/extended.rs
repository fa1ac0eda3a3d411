//! The IMAP4rev2 syntax imap-codec does not parse yet, sans-IO:
//! `SEARCH RETURN (…)` (ESEARCH, RFC 4731), the saved search result `$`
//! (SEARCHRES, RFC 5182) and LIST's selection and return options
//! (LIST-EXTENDED and LIST-STATUS, RFC 5258 and 5819).
//!
//! A [`Rewriter`] sits between the socket and imap-next's framing. It
//! reads command lines (passing literal octets through untouched), takes
//! those parts out of a line and leaves a command the codec parses, with a
//! [`Note`] under the command's tag saying what was taken out. The session
//! answers the command as the note says. Only a line that begins a command
//! is rewritten; a LIST is rewritten only when it is on one line (no
//! literal), else it gets the codec's `BAD`.
//!
//! [`esearch`] encodes the ESEARCH response, which imap-types has no type
//! for either.

use std::collections::VecDeque;
use std::ops::Range;

use imap_codec::imap_types::status::StatusDataItemName;

/// What `$` becomes in the rewritten command: a number no folder reaches
/// (UIDs and sequence numbers are below 2³²−1 here), which the session
/// replaces with the saved result when the note says `dollar`.
pub const SAVED: u32 = u32::MAX;

/// ESEARCH's return options (RFC 4731 §3.1; SAVE from RFC 5182).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SearchReturn {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
    pub save: bool,
}

impl SearchReturn {
    /// What a plain SEARCH returns when IMAP4rev2 is enabled: ALL.
    pub const ALL: SearchReturn = SearchReturn { min: false, max: false, all: true, count: false, save: false };

    /// The matches SAVE keeps: only the least and greatest when MIN or
    /// MAX were all that was asked (RFC 5182 §2.4), else all of them.
    pub fn saved(&self, hits: &[u32]) -> Vec<u32> {
        if self.all || self.count || !(self.min || self.max) {
            return hits.to_vec();
        }
        let mut keep: Vec<u32> = Vec::new();
        if let (true, Some(first)) = (self.min, hits.first()) {
            keep.push(*first);
        }
        if let (true, Some(last)) = (self.max, hits.last())
            && keep.last() != Some(last)
        {
            keep.push(*last);
        }
        keep
    }
}

/// LIST's extended options (RFC 5258 §3, RFC 5819, RFC 6154 §5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Selection: subscribed folders only (RETURN SUBSCRIBED implied).
    pub subscribed: bool,
    /// Selection: folders with a special use only.
    pub special_use: bool,
    /// Selection: parents of selected folders are listed too (CHILDINFO).
    pub recursive: bool,
    /// Return the `\Subscribed` attribute.
    pub return_subscribed: bool,
    /// Return a STATUS response for each folder listed (LIST-STATUS).
    pub status: Vec<StatusDataItemName>,
    /// Every pattern (the codec's command carries only the first).
    pub patterns: Vec<String>,
}

/// What the rewriter took out of one command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Extras {
    /// `SEARCH RETURN (…)`.
    pub search: Option<SearchReturn>,
    /// Some `$` in the command stands for the saved result, as [`SAVED`].
    pub dollar: bool,
    /// An extended LIST.
    pub list: Option<ListOptions>,
}

/// Extras for the command tagged `tag`, or why its extended syntax is
/// wrong (answered `BAD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub tag: String,
    pub extras: Result<Extras, String>,
}

/// Rewrites a client's byte stream line by line (see the module doc).
pub struct Rewriter {
    line: Vec<u8>,
    max_line: usize,
    /// Octets of literal data still to pass through.
    literal: u64,
    /// The literal being passed is synchronising (the server may refuse it).
    sync: bool,
    /// The next line continues a command (it follows a literal).
    continues: bool,
    /// The current line grew past `max_line`: pass it through unread.
    overlong: bool,
    notes: VecDeque<Note>,
}

impl Rewriter {
    pub fn new(max_line: usize) -> Rewriter {
        Rewriter {
            line: Vec::new(),
            max_line,
            literal: 0,
            sync: false,
            continues: false,
            overlong: false,
            notes: VecDeque::new(),
        }
    }

    /// Appends what imap-next should read of `input` to `out`.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() {
            if self.literal > 0 {
                let n = (self.literal.min(input.len() as u64)) as usize;
                out.extend_from_slice(&input[..n]);
                self.literal -= n as u64;
                input = &input[n..];
                continue;
            }
            let (chunk, ended) = match input.iter().position(|b| *b == b'\n') {
                Some(i) => (&input[..=i], true),
                None => (input, false),
            };
            input = &input[chunk.len()..];
            if self.overlong {
                out.extend_from_slice(chunk);
            } else {
                self.line.extend_from_slice(chunk);
                if self.line.len() > self.max_line {
                    out.append(&mut self.line);
                    self.overlong = true;
                }
            }
            if ended {
                self.end_line(out);
            }
        }
    }

    fn end_line(&mut self, out: &mut Vec<u8>) {
        let line = std::mem::take(&mut self.line);
        let literal = literal_at_end(&line);
        if !self.overlong {
            match (!self.continues).then(|| rewrite(&line, literal.is_some())).flatten() {
                Some((rewritten, note)) => {
                    out.extend_from_slice(&rewritten);
                    self.notes.push_back(note);
                }
                None => out.extend_from_slice(&line),
            }
        }
        self.overlong = false;
        self.continues = literal.is_some();
        (self.literal, self.sync) = literal.unwrap_or((0, false));
    }

    /// The server refused the synchronising literal just announced (over
    /// the limit): the client sends no data for it, and its next line
    /// begins a command.
    pub fn literal_refused(&mut self) {
        if self.sync {
            self.literal = 0;
            self.continues = false;
        }
    }

    /// The note for the command tagged `tag`, if the rewriter left one:
    /// notes come in command order, so only the oldest is looked at.
    pub fn take(&mut self, tag: &str) -> Option<Result<Extras, String>> {
        if self.notes.front().is_some_and(|n| n.tag == tag) {
            return self.notes.pop_front().map(|n| n.extras);
        }
        None
    }
}

/// `{n}`, `{n+}` or `~{n}` before the line's end: the literal's length
/// and whether it is synchronising.
fn literal_at_end(line: &[u8]) -> Option<(u64, bool)> {
    let body = line.strip_suffix(b"\n")?;
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    let inner = body.strip_suffix(b"}")?;
    let open = inner.iter().rposition(|b| *b == b'{')?;
    let spec = &inner[open + 1..];
    let (digits, sync) = match spec.strip_suffix(b"+").or(spec.strip_suffix(b"-")) {
        Some(d) => (d, false),
        None => (spec, true),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some((std::str::from_utf8(digits).ok()?.parse().ok()?, sync))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Atom(Vec<u8>),
    Quoted(Vec<u8>),
    Open,
    Close,
}

impl Tok {
    fn is(&self, word: &str) -> bool {
        matches!(self, Tok::Atom(a) if a.eq_ignore_ascii_case(word.as_bytes()))
    }

    fn text(&self) -> Option<String> {
        match self {
            Tok::Atom(a) | Tok::Quoted(a) => Some(String::from_utf8_lossy(a).into_owned()),
            _ => None,
        }
    }
}

/// The line's tokens and where each lies; `None` if a quoted string is
/// not closed.
fn tokens(line: &[u8]) -> Option<Vec<(Tok, Range<usize>)>> {
    let end = line.len() - line.iter().rev().take_while(|b| matches!(b, b'\r' | b'\n')).count();
    let mut out = Vec::new();
    let mut i = 0;
    while i < end {
        let start = i;
        let tok = match line[i] {
            b' ' => {
                i += 1;
                continue;
            }
            b'(' => {
                i += 1;
                Tok::Open
            }
            b')' => {
                i += 1;
                Tok::Close
            }
            b'"' => {
                let mut value = Vec::new();
                i += 1;
                loop {
                    match *line.get(i).filter(|_| i < end)? {
                        b'"' => break,
                        b'\\' => {
                            value.push(*line.get(i + 1).filter(|_| i + 1 < end)?);
                            i += 2;
                        }
                        b => {
                            value.push(b);
                            i += 1;
                        }
                    }
                }
                i += 1;
                Tok::Quoted(value)
            }
            _ => {
                while i < end && !matches!(line[i], b' ' | b'(' | b')' | b'"') {
                    i += 1;
                }
                Tok::Atom(line[start..i].to_vec())
            }
        };
        out.push((tok, start..i));
    }
    Some(out)
}

/// The rewritten line and its note, if the line uses syntax this module
/// handles; `literal`: the line ends in a literal announcement.
fn rewrite(line: &[u8], literal: bool) -> Option<(Vec<u8>, Note)> {
    let toks = tokens(line)?;
    let tag = match toks.first()? {
        (Tok::Atom(t), _) => String::from_utf8_lossy(t).into_owned(),
        _ => return None,
    };
    let mut at = 1;
    if toks.get(at)?.0.is("UID") {
        at += 1;
    }
    let (cmd, _) = toks.get(at)?;
    let mut cuts: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
    let mut extras = Extras::default();
    let note = |extras| Note { tag: tag.clone(), extras };
    if cmd.is("SEARCH") {
        let mut rest = at + 1;
        if toks.get(rest).is_some_and(|t| t.0.is("RETURN")) {
            let (opts, after) = match group(&toks, rest + 1) {
                Some(g) => g,
                None => return Some((line.to_vec(), note(Err("RETURN takes a list of options".into())))),
            };
            let ret = match search_return(&opts) {
                Ok(r) => r,
                Err(e) => return Some((line.to_vec(), note(Err(e)))),
            };
            extras.search = Some(ret);
            let cut_end = toks.get(after).map_or(toks[after - 1].1.end, |t| t.1.start);
            cuts.push((toks[rest].1.start..cut_end, Vec::new()));
            rest = after;
        }
        for (t, span) in &toks[rest..] {
            if *t == Tok::Atom(b"$".to_vec()) {
                cuts.push((span.clone(), SAVED.to_string().into_bytes()));
                extras.dollar = true;
            }
        }
    } else if ["FETCH", "STORE", "COPY", "MOVE", "EXPUNGE"].iter().any(|c| cmd.is(c)) {
        match toks.get(at + 1) {
            Some((Tok::Atom(a), span)) if a == b"$" => {
                cuts.push((span.clone(), SAVED.to_string().into_bytes()));
                extras.dollar = true;
            }
            _ => return None,
        }
    } else if cmd.is("LIST") && at == 1 && !literal {
        return match list(&toks, at + 1) {
            Ok(None) => None,
            Ok(Some((reference, opts))) => {
                let first = opts.patterns.first().cloned().unwrap_or_default();
                let text = format!("{tag} LIST {} {}\r\n", quoted(&reference), quoted(&first));
                extras.list = Some(opts);
                Some((text.into_bytes(), note(Ok(extras))))
            }
            Err(e) => Some((format!("{tag} LIST \"\" \"\"\r\n").into_bytes(), note(Err(e)))),
        };
    } else {
        return None;
    }
    if cuts.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(line.len());
    let mut from = 0;
    for (span, with) in &cuts {
        out.extend_from_slice(&line[from..span.start]);
        out.extend_from_slice(with);
        from = span.end;
    }
    out.extend_from_slice(&line[from..]);
    Some((out, note(Ok(extras))))
}

/// The tokens of the parenthesised list that begins at `at`, and the
/// index after it; `None` if `at` does not open one or it is not closed.
fn group(toks: &[(Tok, Range<usize>)], at: usize) -> Option<(Vec<Tok>, usize)> {
    if toks.get(at)?.0 != Tok::Open {
        return None;
    }
    let mut depth = 0;
    for (i, (t, _)) in toks.iter().enumerate().skip(at) {
        match t {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return Some((toks[at + 1..i].iter().map(|t| t.0.clone()).collect(), i + 1));
                }
            }
            _ => {}
        }
    }
    None
}

fn search_return(opts: &[Tok]) -> Result<SearchReturn, String> {
    let mut r = SearchReturn::default();
    for o in opts {
        let name = o.text().unwrap_or_default().to_ascii_uppercase();
        match name.as_str() {
            "MIN" => r.min = true,
            "MAX" => r.max = true,
            "ALL" => r.all = true,
            "COUNT" => r.count = true,
            "SAVE" => r.save = true,
            _ => return Err(format!("unknown SEARCH RETURN option {name:?} (MIN MAX ALL COUNT SAVE)")),
        }
    }
    // RFC 4731 §3.1: RETURN () is RETURN (ALL).
    if r == SearchReturn::default() {
        r.all = true;
    }
    Ok(r)
}

/// An extended LIST's reference and options, `None` if the command uses
/// none of the options.
fn list(toks: &[(Tok, Range<usize>)], mut at: usize) -> Result<Option<(String, ListOptions)>, String> {
    let mut o = ListOptions::default();
    let mut extended = false;
    if let Some((sel, after)) = group(toks, at) {
        extended = true;
        for t in &sel {
            let name = t.text().unwrap_or_default().to_ascii_uppercase();
            match name.as_str() {
                "SUBSCRIBED" => (o.subscribed, o.return_subscribed) = (true, true),
                "SPECIAL-USE" => o.special_use = true,
                "RECURSIVEMATCH" => o.recursive = true,
                "REMOTE" => {}
                _ => return Err(format!("unknown LIST selection option {name:?}")),
            }
        }
        if o.recursive && !o.subscribed {
            return Err("RECURSIVEMATCH needs another selection option (RFC 5258 section 3.1)".into());
        }
        at = after;
    }
    let reference = toks.get(at).and_then(|t| t.0.text()).ok_or("LIST needs a reference and a pattern")?;
    at += 1;
    match group(toks, at) {
        Some((patterns, after)) => {
            extended = true;
            o.patterns = patterns.iter().filter_map(Tok::text).collect();
            if o.patterns.is_empty() {
                return Err("a list of patterns is not empty".into());
            }
            at = after;
        }
        None => {
            o.patterns.push(toks.get(at).and_then(|t| t.0.text()).ok_or("LIST needs a pattern")?);
            at += 1;
        }
    }
    if toks.get(at).is_some_and(|t| t.0.is("RETURN")) {
        extended = true;
        let (ret, after) = group(toks, at + 1).ok_or("RETURN takes a list of options")?;
        let mut i = 0;
        while i < ret.len() {
            let name = ret[i].text().unwrap_or_default().to_ascii_uppercase();
            match name.as_str() {
                "SUBSCRIBED" => o.return_subscribed = true,
                // Always returned: \HasChildren / \HasNoChildren and the
                // special-use attributes.
                "CHILDREN" | "SPECIAL-USE" => {}
                "STATUS" => {
                    let items = match ret.get(i + 1) {
                        Some(Tok::Open) => &ret[i + 2..],
                        _ => return Err("STATUS takes a list of items".into()),
                    };
                    let close = items.iter().position(|t| *t == Tok::Close).ok_or("STATUS takes a list of items")?;
                    for item in &items[..close] {
                        o.status.push(status_item(&item.text().unwrap_or_default())?);
                    }
                    i += close + 2;
                }
                _ => return Err(format!("unknown LIST return option {name:?}")),
            }
            i += 1;
        }
        at = after;
    }
    if at != toks.len() {
        return Err("unexpected words after LIST's arguments".into());
    }
    Ok(extended.then_some((reference, o)))
}

fn status_item(name: &str) -> Result<StatusDataItemName, String> {
    use StatusDataItemName as S;
    Ok(match name.to_ascii_uppercase().as_str() {
        "MESSAGES" => S::Messages,
        "UIDNEXT" => S::UidNext,
        "UIDVALIDITY" => S::UidValidity,
        "UNSEEN" => S::Unseen,
        "DELETED" => S::Deleted,
        "SIZE" => S::Size,
        "RECENT" => S::Recent,
        "DELETED-STORAGE" => S::DeletedStorage,
        _ => return Err(format!("unknown STATUS item {name:?}")),
    })
}

/// A quoted string (RFC 9051 §4.3).
pub fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A sorted, duplicate-free list of numbers as a sequence set
/// (`1:3,7`), `None` when empty.
pub fn compact(numbers: &[u32]) -> Option<String> {
    let mut out = Vec::new();
    let mut it = numbers.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end = it.next().unwrap_or(end);
        }
        out.push(if start == end { start.to_string() } else { format!("{start}:{end}") });
    }
    (!out.is_empty()).then(|| out.join(","))
}

/// The ESEARCH response (RFC 4731 §3.1) to the command tagged `tag`;
/// `hits` sorted ascending. `None` when SAVE was all that was asked
/// (RFC 5182 §2.1: then nothing is returned).
pub fn esearch(tag: &str, uid: bool, ret: &SearchReturn, hits: &[u32]) -> Option<Vec<u8>> {
    if ret.save && !(ret.min || ret.max || ret.all || ret.count) {
        return None;
    }
    let mut s = format!("* ESEARCH (TAG {})", quoted(tag));
    if uid {
        s.push_str(" UID");
    }
    if let (true, Some(min)) = (ret.min, hits.first()) {
        s.push_str(&format!(" MIN {min}"));
    }
    if let (true, Some(max)) = (ret.max, hits.last()) {
        s.push_str(&format!(" MAX {max}"));
    }
    if let (true, Some(all)) = (ret.all, compact(hits)) {
        s.push_str(&format!(" ALL {all}"));
    }
    if ret.count {
        s.push_str(&format!(" COUNT {}", hits.len()));
    }
    s.push_str("\r\n");
    Some(s.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (String, Vec<Note>) {
        let mut r = Rewriter::new(1024);
        let mut out = Vec::new();
        // Byte by byte: nothing depends on how reads split the stream.
        for b in input {
            r.feed(std::slice::from_ref(b), &mut out);
        }
        (String::from_utf8(out).unwrap(), r.notes.into_iter().collect())
    }

    fn ret(opts: &str) -> SearchReturn {
        let mut r = SearchReturn::default();
        for o in opts.split_whitespace() {
            match o {
                "MIN" => r.min = true,
                "MAX" => r.max = true,
                "ALL" => r.all = true,
                "COUNT" => r.count = true,
                "SAVE" => r.save = true,
                _ => unreachable!(),
            }
        }
        r
    }

    #[test]
    fn search_return_and_saved_results() {
        let search = |r: SearchReturn, dollar| Ok(Extras { search: Some(r), dollar, list: None });
        let dollar = Ok(Extras { search: None, dollar: true, list: None });
        type Case = (&'static str, &'static str, Option<Result<Extras, String>>);
        let cases: Vec<Case> = vec![
            ("a SEARCH UNSEEN\r\n", "a SEARCH UNSEEN\r\n", None),
            ("a SEARCH RETURN (MIN COUNT) UNSEEN\r\n", "a SEARCH UNSEEN\r\n", Some(search(ret("MIN COUNT"), false))),
            ("a uid search return () all\r\n", "a uid search all\r\n", Some(search(ret("ALL"), false))),
            ("a UID SEARCH RETURN (SAVE) FLAGGED\r\n", "a UID SEARCH FLAGGED\r\n", Some(search(ret("SAVE"), false))),
            ("a SEARCH RETURN (FROB) ALL\r\n", "a SEARCH RETURN (FROB) ALL\r\n", Some(Err(String::new()))),
            ("a SEARCH RETURN ALL\r\n", "a SEARCH RETURN ALL\r\n", Some(Err(String::new()))),
            (
                "b SEARCH RETURN (COUNT) $ UNSEEN\r\n",
                "b SEARCH 4294967295 UNSEEN\r\n",
                Some(search(ret("COUNT"), true)),
            ),
            ("b SEARCH OR $ 1:3 UID $\r\n", "b SEARCH OR 4294967295 1:3 UID 4294967295\r\n", Some(dollar.clone())),
            ("c UID FETCH $ (FLAGS)\r\n", "c UID FETCH 4294967295 (FLAGS)\r\n", Some(dollar.clone())),
            ("c STORE $ +FLAGS (\\Seen)\r\n", "c STORE 4294967295 +FLAGS (\\Seen)\r\n", Some(dollar.clone())),
            ("c MOVE $ Archive\r\n", "c MOVE 4294967295 Archive\r\n", Some(dollar.clone())),
            ("c FETCH 1:* (BODY[HEADER.FIELDS (FROM)])\r\n", "c FETCH 1:* (BODY[HEADER.FIELDS (FROM)])\r\n", None),
            ("d SEARCH SUBJECT \"$\"\r\n", "d SEARCH SUBJECT \"$\"\r\n", None),
        ];
        for (input, want, note) in cases {
            let (got, notes) = run(input.as_bytes());
            assert_eq!(got, want, "{input:?}");
            match (note, notes.first()) {
                (None, None) => {}
                (Some(Err(_)), Some(Note { extras: Err(_), .. })) => {}
                (Some(Ok(w)), Some(Note { extras: Ok(g), .. })) => assert_eq!(&w, g, "{input:?}"),
                (w, g) => panic!("{input:?}: wanted {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn literal_octets_and_continuation_lines_are_not_rewritten() {
        let input = "a APPEND INBOX {29}\r\nx SEARCH RETURN (ALL) ALL\r\n\r\n\
                     b LOGIN {3}\r\nbob y SEARCH RETURN (ALL) 1\r\n\
                     c SEARCH RETURN (COUNT) ALL\r\n";
        let (got, notes) = run(input.as_bytes());
        assert_eq!(
            got,
            "a APPEND INBOX {29}\r\nx SEARCH RETURN (ALL) ALL\r\n\r\n\
             b LOGIN {3}\r\nbob y SEARCH RETURN (ALL) 1\r\n\
             c SEARCH ALL\r\n"
        );
        assert_eq!(notes.len(), 1);
        assert_eq!(notes[0].tag, "c");
    }

    #[test]
    fn a_refused_literal_sends_no_data() {
        let mut r = Rewriter::new(1024);
        let mut out = Vec::new();
        r.feed(b"a APPEND INBOX {99999}\r\n", &mut out);
        r.literal_refused();
        r.feed(b"b SEARCH RETURN (COUNT) ALL\r\n", &mut out);
        assert!(out.ends_with(b"b SEARCH ALL\r\n"), "{}", String::from_utf8_lossy(&out));
        assert!(r.take("a").is_none());
        assert_eq!(r.take("b").unwrap().unwrap().search, Some(ret("COUNT")));
    }

    #[test]
    fn an_overlong_line_passes_unread() {
        let mut r = Rewriter::new(32);
        let mut out = Vec::new();
        let long = format!("a SEARCH RETURN (COUNT) {}\r\nb SEARCH RETURN (MIN) ALL\r\n", "X".repeat(40));
        r.feed(long.as_bytes(), &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("a SEARCH RETURN (COUNT) {}\r\nb SEARCH ALL\r\n", "X".repeat(40))
        );
    }

    #[test]
    fn extended_list_commands() {
        let opts = |f: &dyn Fn(&mut ListOptions)| {
            let mut o = ListOptions::default();
            f(&mut o);
            o
        };
        type Case = (&'static str, &'static str, Result<Option<ListOptions>, ()>);
        let cases: Vec<Case> = vec![
            ("a LIST \"\" *\r\n", "a LIST \"\" *\r\n", Ok(None)),
            (
                "a LIST (SUBSCRIBED) \"\" \"*\"\r\n",
                "a LIST \"\" \"*\"\r\n",
                Ok(Some(opts(&|o| {
                    (o.subscribed, o.return_subscribed) = (true, true);
                    o.patterns = vec!["*".into()];
                }))),
            ),
            (
                "a LIST \"\" (INBOX \"Sent\" Arch/%) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n",
                "a LIST \"\" \"INBOX\"\r\n",
                Ok(Some(opts(&|o| {
                    o.patterns = vec!["INBOX".into(), "Sent".into(), "Arch/%".into()];
                    o.status = vec![StatusDataItemName::Messages, StatusDataItemName::Unseen];
                }))),
            ),
            (
                "a list (special-use recursivematch subscribed) Arch %\r\n",
                "a LIST \"Arch\" \"%\"\r\n",
                Ok(Some(opts(&|o| {
                    (o.subscribed, o.return_subscribed, o.special_use, o.recursive) = (true, true, true, true);
                    o.patterns = vec!["%".into()];
                }))),
            ),
            ("a LIST (RECURSIVEMATCH) \"\" *\r\n", "a LIST \"\" \"\"\r\n", Err(())),
            ("a LIST \"\" * RETURN (FROB)\r\n", "a LIST \"\" \"\"\r\n", Err(())),
            ("a LIST \"\" * RETURN (STATUS (FROB))\r\n", "a LIST \"\" \"\"\r\n", Err(())),
            ("a LIST (SUBSCRIBED) {3}\r\n", "a LIST (SUBSCRIBED) {3}\r\n", Ok(None)),
        ];
        for (input, want, o) in cases {
            let (got, notes) = run(input.as_bytes());
            assert_eq!(got, want, "{input:?}");
            match (o, notes.first()) {
                (Ok(None), None) => {}
                (Ok(Some(w)), Some(Note { extras: Ok(Extras { list: Some(g), .. }), .. })) => {
                    assert_eq!(&w, g, "{input:?}")
                }
                (Err(()), Some(Note { extras: Err(_), .. })) => {}
                (w, g) => panic!("{input:?}: wanted {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn esearch_responses() {
        let cases: &[(&str, bool, &[u32], Option<&str>)] = &[
            ("MIN MAX COUNT", true, &[3, 4, 9], Some("* ESEARCH (TAG \"a\") UID MIN 3 MAX 9 COUNT 3\r\n")),
            ("ALL", false, &[1, 2, 3, 7, 9, 10], Some("* ESEARCH (TAG \"a\") ALL 1:3,7,9:10\r\n")),
            ("ALL COUNT", false, &[], Some("* ESEARCH (TAG \"a\") COUNT 0\r\n")),
            ("MIN", false, &[], Some("* ESEARCH (TAG \"a\")\r\n")),
            ("SAVE", true, &[1], None),
            ("SAVE MIN", true, &[1, 5], Some("* ESEARCH (TAG \"a\") UID MIN 1\r\n")),
        ];
        for (opts, uid, hits, want) in cases {
            let got = esearch("a", *uid, &ret(opts), hits).map(|b| String::from_utf8(b).unwrap());
            assert_eq!(got.as_deref(), *want, "{opts}");
        }
        assert_eq!(ret("SAVE MIN MAX").saved(&[2, 5, 8]), vec![2, 8]);
        assert_eq!(ret("SAVE MIN").saved(&[4]), vec![4]);
        assert_eq!(ret("SAVE COUNT").saved(&[2, 5, 8]), vec![2, 5, 8]);
        assert_eq!(ret("SAVE").saved(&[]), Vec::<u32>::new());
    }
}

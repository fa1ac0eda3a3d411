//! What IMAP shows of a message's octets, sans-IO: ENVELOPE, BODYSTRUCTURE
//! and the `BODY[section]<partial>` slices, from one parse by mail-parser.
//! Header values are given raw (unfolded, encoded words kept), as RFC 9051
//! §7.5.2 asks.

use std::borrow::Cow;
use std::num::NonZeroU32;

use imap_codec::imap_types::body::{
    BasicFields, Body, BodyStructure, Disposition, SinglePartExtensionData, SpecificFields,
};
use imap_codec::imap_types::core::{IString, NString, Vec1};
use imap_codec::imap_types::envelope::{Address, Envelope};
use imap_codec::imap_types::fetch::Section;
use mail_parser::{HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType};

/// A parsed message and its octets.
pub struct Parsed<'a> {
    raw: &'a [u8],
    message: Option<Message<'a>>,
}

impl<'a> Parsed<'a> {
    pub fn new(raw: &'a [u8]) -> Parsed<'a> {
        Parsed { raw, message: parser().parse(raw) }
    }

    /// Parses the header section alone: enough for ENVELOPE, header fields
    /// and header searches, at a fraction of the cost (BODYSTRUCTURE and
    /// body sections need [`Parsed::new`]).
    pub fn header_only(raw: &'a [u8]) -> Parsed<'a> {
        Parsed { raw, message: parser().parse(&raw[..header_len(raw)]) }
    }

    /// The header section, blank line included.
    pub fn header(&self) -> &'a [u8] {
        &self.raw[..header_len(self.raw)]
    }

    pub fn envelope(&self) -> Envelope<'static> {
        match &self.message {
            Some(m) => envelope_of(m, m.raw_message()),
            None => empty_envelope(),
        }
    }

    pub fn body_structure(&self, extensions: bool) -> BodyStructure<'static> {
        match &self.message {
            Some(m) if !m.parts.is_empty() => structure(m, 0, extensions, 0),
            _ => plain_structure(self.raw),
        }
    }

    /// The octets of `section` (`None`: the whole message), or `None` when
    /// the message has no such part (answered as an empty string).
    pub fn section(&self, section: Option<&Section<'_>>) -> Option<Vec<u8>> {
        let Some(section) = section else { return Some(self.raw.to_vec()) };
        let (part, what) = match section {
            Section::Part(p) => (Some(p), What::Body),
            Section::Header(p) => (p.as_ref(), What::Header),
            Section::HeaderFields(p, names) => (p.as_ref(), What::Fields(names_of(names.as_ref()), true)),
            Section::HeaderFieldsNot(p, names) => (p.as_ref(), What::Fields(names_of(names.as_ref()), false)),
            Section::Text(p) => (p.as_ref(), What::Text),
            Section::Mime(p) => (Some(p), What::Mime),
        };
        let Some(message) = &self.message else {
            return match (part, &what) {
                (None, What::Header) => Some(self.header().to_vec()),
                (None, What::Text) => Some(self.raw[self.header().len()..].to_vec()),
                (None, What::Fields(names, keep)) => Some(fields(self.header(), names, *keep)),
                _ => None,
            };
        };
        let path: Vec<u32> = part.map(|p| p.0.as_ref().iter().map(|n| n.get()).collect()).unwrap_or_default();
        select(message, &path, &what)
    }
}

impl Parsed<'_> {
    /// The text SEARCH looks in for a header field: its raw values and,
    /// for addresses and the subject, their decoded forms.
    pub fn search_text(&self, field: &str) -> String {
        let mut out = String::from_utf8_lossy(&fields(self.header(), &[field.to_ascii_lowercase()], true)).to_string();
        if let Some(m) = &self.message {
            let decoded = match field.to_ascii_lowercase().as_str() {
                "subject" => m.subject().map(str::to_string),
                "from" => m.from().map(address_text),
                "to" => m.to().map(address_text),
                "cc" => m.cc().map(address_text),
                "bcc" => m.bcc().map(address_text),
                _ => None,
            };
            if let Some(d) = decoded {
                out.push(' ');
                out.push_str(&d);
            }
        }
        out
    }

    /// Whether the header has a field of that name.
    pub fn has_field(&self, field: &str) -> bool {
        fields(self.header(), &[field.to_ascii_lowercase()], true).len() > 2
    }

    /// The `Date:` header's day, in its own time zone (RFC 9051 SENTON).
    pub fn sent_date(&self) -> Option<chrono::NaiveDate> {
        let d = self.message.as_ref()?.date()?;
        chrono::NaiveDate::from_ymd_opt(d.year as i32, d.month as u32, d.day as u32)
    }

    /// The body, as text (lossy), for SEARCH BODY.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.raw[self.header().len()..]).to_string()
    }

    /// The whole message, as text (lossy), for SEARCH TEXT.
    pub fn whole_text(&self) -> String {
        String::from_utf8_lossy(self.raw).to_string()
    }
}

fn address_text(a: &mail_parser::Address<'_>) -> String {
    a.iter()
        .map(|x| format!("{} <{}>", x.name.as_deref().unwrap_or(""), x.address.as_deref().unwrap_or("")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The header parsers IMAP needs: MIME (for the structure), addresses,
/// dates and the subject. Others stay raw (a Received header is never
/// taken apart).
fn parser() -> MessageParser {
    MessageParser::new()
        .with_mime_headers()
        .with_date_headers()
        .with_address_headers()
        .header_text(mail_parser::HeaderName::Subject)
}

enum What {
    Body,
    Header,
    Fields(Vec<String>, bool),
    Text,
    Mime,
}

fn names_of(names: &[imap_codec::imap_types::core::AString<'_>]) -> Vec<String> {
    names.iter().map(|n| String::from_utf8_lossy(n.as_ref()).to_ascii_lowercase()).collect()
}

/// Where a part number path leads, and the octets asked of it.
fn select(message: &Message<'_>, path: &[u32], what: &What) -> Option<Vec<u8>> {
    let raw = message.raw_message();
    if path.is_empty() {
        // The parser's offsets are not trusted to lie within the octets
        // (a nested message's can point past its end): clamp, never slice
        // out of bounds.
        let split = (message.parts.first()?.offset_body as usize).min(raw.len());
        let (header, text) = raw.split_at(split);
        return Some(match what {
            What::Header => header.to_vec(),
            What::Fields(names, keep) => fields(header, names, *keep),
            What::Text => text.to_vec(),
            What::Body | What::Mime => raw.to_vec(),
        });
    }
    let (message, index) = locate(message, path)?;
    let raw = message.raw_message();
    let part = message.parts.get(index)?;
    let body = raw.get(part.offset_body as usize..part.offset_end as usize)?;
    let mime = raw.get(part.offset_header as usize..part.offset_body as usize)?;
    match (what, &part.body) {
        (What::Body, _) => Some(body.to_vec()),
        (What::Mime, _) => Some(mime.to_vec()),
        (What::Header | What::Fields(..) | What::Text, PartType::Message(inner)) => select(inner, &[], what),
        _ => None,
    }
}

/// The message and the index of the part a part-number path leads to: in
/// a multipart, n is its n-th child; in a single part, 1 is the part
/// itself; a path going on past an attached message goes into it.
fn locate<'m, 'x>(message: &'m Message<'x>, path: &[u32]) -> Option<(&'m Message<'x>, usize)> {
    let mut index = 0usize;
    let mut steps = path.iter().copied();
    while let Some(n) = steps.next() {
        let part = message.parts.get(index)?;
        index = match &part.body {
            PartType::Multipart(children) => *children.get((n as usize).checked_sub(1)?)? as usize,
            PartType::Message(inner) if index != 0 => {
                let remaining: Vec<u32> = std::iter::once(n).chain(steps).collect();
                return locate(inner, &remaining);
            }
            _ if n == 1 && index == 0 => 0,
            _ => return None,
        };
    }
    Some((message, index))
}

/// A part whose transfer encoding does not decode (RFC 3516 `UNKNOWN-CTE`).
#[derive(Debug, PartialEq, Eq)]
pub struct Undecodable;

/// Octets of a part that does not exist (`None`) or a whole message
/// (path empty) are given as they are.
fn decoded(message: &Message<'_>, path: &[u32]) -> Result<Option<Vec<u8>>, Undecodable> {
    use mail_parser::decoders::{base64::base64_decode, quoted_printable::quoted_printable_decode};
    let Some((m, index)) = locate(message, path) else { return Ok(None) };
    let Some(part) = m.parts.get(index) else { return Ok(None) };
    let Some(body) = m.raw_message().get(part.offset_body as usize..part.offset_end as usize) else {
        return Ok(None);
    };
    let cte = part.content_transfer_encoding().unwrap_or("7bit").trim().to_ascii_lowercase();
    match cte.as_str() {
        "7bit" | "8bit" | "binary" => Ok(Some(body.to_vec())),
        "base64" => base64_decode(body).map(Some).ok_or(Undecodable),
        "quoted-printable" => quoted_printable_decode(body).map(Some).ok_or(Undecodable),
        _ => Err(Undecodable),
    }
}

impl Parsed<'_> {
    /// `BINARY[path]` (RFC 3516): the part with its transfer encoding
    /// undone; the whole message as it is for an empty path; empty for a
    /// part that does not exist.
    pub fn binary(&self, path: &[u32]) -> Result<Vec<u8>, Undecodable> {
        match (&self.message, path.is_empty()) {
            (_, true) => Ok(self.raw.to_vec()),
            (Some(m), false) => Ok(decoded(m, path)?.unwrap_or_default()),
            (None, false) => Ok(Vec::new()),
        }
    }
}

/// The header lines of `header` whose names are (or, `keep` false, are
/// not) in `names`, and the blank line that ends a header section.
pub fn fields(header: &[u8], names: &[String], keep: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut take = false;
    for line in header.split_inclusive(|b| *b == b'\n') {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        if !matches!(line.first(), Some(b' ' | b'\t')) {
            let name = line.split(|b| *b == b':').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name).trim().to_ascii_lowercase();
            take = names.contains(&name) == keep;
        }
        if take {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Octets of the header section, blank line included (all of it when the
/// message has no body).
pub fn header_len(raw: &[u8]) -> usize {
    crate::proto::digest::header_section_len(raw)
}

fn nstring(v: Option<String>) -> NString<'static> {
    match v {
        Some(s) => NString(IString::try_from(s.replace('\0', "")).ok()),
        None => NString(None),
    }
}

fn istring(s: impl Into<String>) -> IString<'static> {
    let s: String = s.into();
    IString::try_from(s.replace(['\0', '\r', '\n'], "")).unwrap_or_else(|_| IString::try_from("").expect("empty"))
}

/// A header's raw value, unfolded and trimmed.
fn raw_value(part: &MessagePart<'_>, raw: &[u8], name: &str) -> Option<String> {
    let h = part.headers.iter().find(|h| h.name.as_str().eq_ignore_ascii_case(name))?;
    let v = raw.get(h.offset_start as usize..h.offset_end as usize)?;
    let text = String::from_utf8_lossy(v);
    let unfolded: String = text.replace("\r\n", "").replace('\n', "");
    Some(unfolded.trim().to_string())
}

fn empty_envelope() -> Envelope<'static> {
    Envelope {
        date: NString(None),
        subject: NString(None),
        from: vec![],
        sender: vec![],
        reply_to: vec![],
        to: vec![],
        cc: vec![],
        bcc: vec![],
        in_reply_to: NString(None),
        message_id: NString(None),
    }
}

fn envelope_of(m: &Message<'_>, raw: &[u8]) -> Envelope<'static> {
    let Some(root) = m.parts.first() else { return empty_envelope() };
    let addresses = |name: &str| -> Vec<Address<'static>> {
        root.headers
            .iter()
            .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
            .map(|h| addresses_of(&h.value))
            .unwrap_or_default()
    };
    let from = addresses("From");
    // RFC 9051 §7.5.2: sender and reply-to default to from.
    let or_from = |v: Vec<Address<'static>>| if v.is_empty() { from.clone() } else { v };
    Envelope {
        date: nstring(raw_value(root, raw, "Date")),
        subject: nstring(raw_value(root, raw, "Subject")),
        sender: or_from(addresses("Sender")),
        reply_to: or_from(addresses("Reply-To")),
        from,
        to: addresses("To"),
        cc: addresses("Cc"),
        bcc: addresses("Bcc"),
        in_reply_to: nstring(raw_value(root, raw, "In-Reply-To")),
        message_id: nstring(raw_value(root, raw, "Message-ID")),
    }
}

fn addresses_of(v: &HeaderValue<'_>) -> Vec<Address<'static>> {
    let HeaderValue::Address(a) = v else { return vec![] };
    let mut out = Vec::new();
    let one = |name: Option<&str>, address: Option<&str>| {
        let (mailbox, host) = match address.and_then(|a| a.rsplit_once('@')) {
            Some((l, d)) => (Some(l.to_string()), Some(d.to_string())),
            None => (address.map(str::to_string), None),
        };
        Address {
            name: nstring(name.map(encode_word)),
            adl: NString(None),
            mailbox: nstring(mailbox),
            host: nstring(host),
        }
    };
    match a {
        mail_parser::Address::List(list) => {
            for addr in list {
                out.push(one(addr.name.as_deref(), addr.address.as_deref()));
            }
        }
        mail_parser::Address::Group(groups) => {
            for g in groups {
                // A group: a start marker (NIL host, the name as mailbox),
                // its members, an end marker (NIL mailbox and host).
                let marker = |mailbox: Option<String>| Address {
                    name: NString(None),
                    adl: NString(None),
                    mailbox: nstring(mailbox),
                    host: NString(None),
                };
                out.push(marker(Some(g.name.as_deref().unwrap_or("").to_string())));
                for addr in &g.addresses {
                    out.push(one(addr.name.as_deref(), addr.address.as_deref()));
                }
                out.push(marker(None));
            }
        }
    }
    out
}

/// A display name as an RFC 2047 encoded word when it is not ASCII (an
/// IMAP4rev1 string carries no 8-bit text).
pub fn encode_word(name: &str) -> String {
    if name.is_ascii() {
        return name.to_string();
    }
    use base64::Engine;
    format!("=?utf-8?b?{}?=", base64::engine::general_purpose::STANDARD.encode(name.as_bytes()))
}

fn lines(body: &[u8]) -> u32 {
    body.iter().filter(|b| **b == b'\n').count() as u32
}

/// How deep BODYSTRUCTURE describes nested parts; deeper ones are given
/// as opaque octets (a hostile message cannot run the stack out).
const MAX_NESTING: usize = 48;

fn structure(m: &Message<'_>, index: usize, extensions: bool, depth: usize) -> BodyStructure<'static> {
    let raw = m.raw_message();
    let Some(part) = m.parts.get(index) else { return plain_structure(b"") };
    if depth >= MAX_NESTING {
        return opaque_structure(raw.get(part.offset_body as usize..part.offset_end as usize).unwrap_or_default());
    }
    let (ctype, csub, params) = match part.content_type() {
        Some(ct) => (
            ct.c_type.to_ascii_lowercase(),
            ct.c_subtype.as_deref().map(str::to_ascii_lowercase),
            ct.attributes()
                .map(|a| a.iter().map(|a| (istring(a.name.to_string()), istring(a.value.to_string()))).collect())
                .unwrap_or_default(),
        ),
        None => ("text".to_string(), Some("plain".to_string()), vec![(istring("charset"), istring("us-ascii"))]),
    };
    if let PartType::Multipart(children) = &part.body {
        // A part's children come after it; a parse that says otherwise
        // (malformed input) would make the walk go round in a circle.
        let bodies: Vec<BodyStructure<'static>> = children
            .iter()
            .filter(|c| **c as usize > index)
            .map(|c| structure(m, *c as usize, extensions, depth + 1))
            .collect();
        if let Ok(bodies) = Vec1::try_from(bodies) {
            return BodyStructure::Multi {
                bodies,
                subtype: istring(csub.unwrap_or_else(|| "mixed".into())),
                extension_data: None,
            };
        }
    }
    let body = raw.get(part.offset_body as usize..part.offset_end as usize).unwrap_or_default();
    let encoding = raw_value(part, raw, "Content-Transfer-Encoding").unwrap_or_else(|| "7bit".into());
    let basic = BasicFields {
        parameter_list: params,
        id: nstring(raw_value(part, raw, "Content-ID")),
        description: nstring(raw_value(part, raw, "Content-Description")),
        content_transfer_encoding: istring(encoding.to_ascii_lowercase()),
        size: body.len() as u32,
    };
    let subtype = csub.unwrap_or_else(|| "plain".into());
    let specific = match (&part.body, ctype.as_str()) {
        (PartType::Message(inner), _) => SpecificFields::Message {
            envelope: Box::new(envelope_of(inner, inner.raw_message())),
            body_structure: Box::new(if inner.parts.is_empty() {
                plain_structure(inner.raw_message())
            } else {
                structure(inner, 0, extensions, depth + 1)
            }),
            number_of_lines: lines(body),
        },
        (_, "text") => SpecificFields::Text { subtype: istring(subtype), number_of_lines: lines(body) },
        _ => SpecificFields::Basic { r#type: istring(ctype), subtype: istring(subtype) },
    };
    let extension_data = if extensions {
        part.content_disposition().map(|d| SinglePartExtensionData {
            md5: NString(None),
            tail: Some(Disposition {
                disposition: Some((
                    istring(d.c_type.to_string()),
                    d.attributes()
                        .map(|a| {
                            a.iter().map(|a| (istring(a.name.to_string()), istring(a.value.to_string()))).collect()
                        })
                        .unwrap_or_default(),
                )),
                tail: None,
            }),
        })
    } else {
        None
    };
    BodyStructure::Single { body: Body { basic, specific }, extension_data }
}

/// A part described no further: application/octet-stream of its octets.
fn opaque_structure(body: &[u8]) -> BodyStructure<'static> {
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: vec![],
                id: NString(None),
                description: NString(None),
                content_transfer_encoding: istring("binary"),
                size: body.len() as u32,
            },
            specific: SpecificFields::Basic { r#type: istring("application"), subtype: istring("octet-stream") },
        },
        extension_data: None,
    }
}

/// A message mail-parser could not make sense of: one text/plain part.
fn plain_structure(raw: &[u8]) -> BodyStructure<'static> {
    let body = &raw[header_len(raw).min(raw.len())..];
    BodyStructure::Single {
        body: Body {
            basic: BasicFields {
                parameter_list: vec![(istring("charset"), istring("us-ascii"))],
                id: NString(None),
                description: NString(None),
                content_transfer_encoding: istring("7bit"),
                size: body.len() as u32,
            },
            specific: SpecificFields::Text { subtype: istring("plain"), number_of_lines: lines(body) },
        },
        extension_data: None,
    }
}

/// `<origin.count>` of a partial fetch.
pub fn partial(data: &[u8], partial: Option<(u32, NonZeroU32)>) -> Cow<'_, [u8]> {
    match partial {
        None => Cow::Borrowed(data),
        Some((start, count)) => {
            let start = (start as usize).min(data.len());
            let end = start.saturating_add(count.get() as usize).min(data.len());
            Cow::Borrowed(&data[start..end])
        }
    }
}

/// A placeholder for a message its store no longer has (recalled by its
/// sender, or expired): a short message saying so, under the same sender.
pub fn placeholder(sender: &str, store: &str, why: &str) -> Vec<u8> {
    format!(
        "From: <{sender}>\r\nSubject: [message no longer available]\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         This message is no longer available at its sender's store ({store}): {why}.\r\n\
         In IM2000 the sender keeps each message; it was recalled or it expired there.\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use imap_codec::imap_types::core::AString;
    use imap_codec::imap_types::fetch::Part;

    const MULTI: &[u8] = b"From: Ann Example <ann@a.test>\r\nTo: bob@b.test, \"Carl\" <carl@b.test>\r\n\
Subject: =?utf-8?q?caf=C3=A9?=\r\n\tfolded\r\nMessage-ID: <1@a.test>\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\npreamble\r\n--XX\r\n\
Content-Type: text/plain; charset=utf-8\r\n\r\nhello\r\nworld\r\n--XX\r\nContent-Type: application/pdf; name=a.pdf\r\n\
Content-Disposition: attachment; filename=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--XX--\r\n";

    fn part(path: &[u32]) -> Part {
        Part(Vec1::try_from(path.iter().map(|n| NonZeroU32::new(*n).unwrap()).collect::<Vec<_>>()).unwrap())
    }

    #[test]
    fn sections_of_a_multipart_message() {
        let p = Parsed::new(MULTI);
        let cases: &[(Option<Section<'_>>, Option<&[u8]>)] = &[
            (Some(Section::Part(part(&[1]))), Some(b"hello\r\nworld")),
            (Some(Section::Part(part(&[2]))), Some(b"AAAA")),
            (Some(Section::Part(part(&[3]))), None),
            (Some(Section::Mime(part(&[1]))), Some(b"Content-Type: text/plain; charset=utf-8\r\n\r\n")),
            (
                Some(Section::HeaderFields(None, Vec1::from(AString::try_from("subject").unwrap()))),
                Some(b"Subject: =?utf-8?q?caf=C3=A9?=\r\n\tfolded\r\n\r\n"),
            ),
        ];
        for (section, want) in cases {
            let got = p.section(section.as_ref());
            assert_eq!(got.as_deref(), *want, "{section:?}: {:?}", got.as_ref().map(|g| String::from_utf8_lossy(g)));
        }
        assert_eq!(p.section(None).unwrap(), MULTI);
        let header = p.section(Some(&Section::Header(None))).unwrap();
        assert!(header.ends_with(b"boundary=\"XX\"\r\n\r\n"));
        let text = p.section(Some(&Section::Text(None))).unwrap();
        assert!(text.starts_with(b"preamble"));
    }

    #[test]
    fn binary_sections_undo_the_transfer_encoding() {
        let qp = b"Subject: q\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9=\r\n!\r\n";
        let uu = b"Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin\r\n--X--\r\n";
        type Case<'a> = (&'a [u8], &'a [u32], Result<&'a [u8], Undecodable>);
        let cases: &[Case<'_>] = &[
            (MULTI, &[2], Ok(b"\0\0\0")),
            (MULTI, &[1], Ok(b"hello\r\nworld")),
            (MULTI, &[], Ok(MULTI)),
            (MULTI, &[7], Ok(b"")),
            (qp, &[1], Ok("café!\r\n".as_bytes())),
            (uu, &[1], Err(Undecodable)),
        ];
        for (raw, path, want) in cases {
            let got = Parsed::new(raw).binary(path);
            assert_eq!(
                got.as_deref().map_err(|_| Undecodable),
                want.as_ref().map(|w| &w[..]).map_err(|_| Undecodable),
                "{path:?}"
            );
        }
    }

    #[test]
    fn a_single_part_message_is_its_own_part_one() {
        let raw = b"Subject: hi\r\n\r\nbody\r\n";
        let p = Parsed::new(raw);
        assert_eq!(p.section(Some(&Section::Part(part(&[1])))).unwrap(), b"body\r\n");
        assert_eq!(p.section(Some(&Section::Part(part(&[2])))), None);
    }

    #[test]
    fn the_envelope_keeps_raw_values_and_splits_addresses() {
        let e = Parsed::new(MULTI).envelope();
        let text = |n: &NString<'_>| n.0.as_ref().map(|s| String::from_utf8_lossy(s.as_ref()).to_string());
        assert_eq!(text(&e.subject).as_deref(), Some("=?utf-8?q?caf=C3=A9?=\tfolded"));
        assert_eq!(text(&e.message_id).as_deref(), Some("<1@a.test>"));
        assert_eq!(e.from.len(), 1);
        assert_eq!(text(&e.from[0].name).as_deref(), Some("Ann Example"));
        assert_eq!(text(&e.from[0].mailbox).as_deref(), Some("ann"));
        assert_eq!(text(&e.from[0].host).as_deref(), Some("a.test"));
        assert_eq!(e.sender, e.from, "sender defaults to from");
        assert_eq!(e.to.len(), 2);
        assert_eq!(text(&e.to[1].name).as_deref(), Some("Carl"));
    }

    #[test]
    fn the_structure_of_a_multipart_message() {
        let BodyStructure::Multi { bodies, subtype, .. } = Parsed::new(MULTI).body_structure(true) else {
            panic!("multipart expected")
        };
        assert_eq!(subtype.as_ref(), b"mixed");
        let parts = bodies.as_ref();
        assert_eq!(parts.len(), 2);
        let BodyStructure::Single { body, .. } = &parts[0] else { panic!() };
        assert!(matches!(body.specific, SpecificFields::Text { number_of_lines: 1, .. }));
        assert_eq!(body.basic.size, 12);
        let BodyStructure::Single { body, extension_data } = &parts[1] else { panic!() };
        assert_eq!(body.basic.content_transfer_encoding.as_ref(), b"base64");
        assert!(extension_data.is_some(), "the attachment's disposition");
    }

    /// Every message of the fuzz corpus (fixtures/fuzz/imap_message, where
    /// inputs that once crashed a section request are kept) answers every
    /// section or lacks it, never panics.
    #[test]
    fn hostile_structures_never_panic() {
        let sections = [
            None,
            Some(Section::Header(None)),
            Some(Section::Text(None)),
            Some(Section::Part(part(&[1]))),
            Some(Section::Header(Some(part(&[1])))),
            Some(Section::Text(Some(part(&[1])))),
            Some(Section::Mime(part(&[1, 1]))),
            Some(Section::Part(part(&[1, 1]))),
        ];
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/fuzz/imap_message");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let raw = std::fs::read(entry.unwrap().path()).unwrap();
            let p = Parsed::new(&raw);
            seen += 1;
            let _ = (p.envelope(), p.body_structure(true));
            for s in &sections {
                let _ = p.section(s.as_ref());
            }
        }
        assert!(seen >= 4, "the corpus is read ({seen} files)");
    }

    #[test]
    fn deep_nesting_is_described_to_a_bound() {
        let mut raw = b"Subject: inner\r\n\r\ntext\r\n".to_vec();
        for _ in 0..200 {
            raw = [&b"Content-Type: message/rfc822\r\n\r\n"[..], &raw].concat();
        }
        // Run on a small stack, as a task's would be.
        let depth = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || {
                let mut s = Parsed::new(&raw).body_structure(true);
                let mut depth = 0;
                while let BodyStructure::Single {
                    body: Body { specific: SpecificFields::Message { body_structure, .. }, .. },
                    ..
                } = s
                {
                    s = *body_structure;
                    depth += 1;
                }
                depth
            })
            .unwrap()
            .join()
            .unwrap();
        assert!((1..=MAX_NESTING).contains(&depth), "{depth}");
    }

    #[test]
    fn non_ascii_names_become_encoded_words() {
        assert_eq!(encode_word("Ann"), "Ann");
        assert_eq!(encode_word("Zoë"), "=?utf-8?b?Wm/Dqw==?=");
    }

    #[test]
    fn header_fields_not_and_partial() {
        let h = b"A: 1\r\nB: 2\r\n x\r\nC: 3\r\n\r\n";
        assert_eq!(fields(h, &["b".into()], false), b"A: 1\r\nC: 3\r\n\r\n");
        assert_eq!(fields(h, &["b".into()], true), b"B: 2\r\n x\r\n\r\n");
        assert_eq!(&*partial(b"abcdef", Some((2, NonZeroU32::new(3).unwrap()))), b"cde");
        assert_eq!(&*partial(b"abc", Some((5, NonZeroU32::new(3).unwrap()))), b"");
    }
}

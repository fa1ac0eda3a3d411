//! The DATA phase, sans-IO. Only `<CRLF>.<CRLF>` ends a message: a bare LF
//! or CR anywhere makes the message unacceptable (so `<LF>.<CR><LF>`,
//! `<LF>.<LF>` and `<CR><LF>.<LF>` can never end it early and smuggle a
//! second message), lines longer than RFC 5321 allows are flagged, and the
//! size limit is enforced without buffering past it.

/// Longest text line, without its CRLF (RFC 5321 §4.5.3.1.6).
pub const MAX_LINE: usize = 998;

/// Why a received message cannot be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFault {
    /// A bare LF or bare CR was in the data.
    BareNewline,
    /// A line longer than 998 octets.
    LineTooLong,
    /// More than the size limit.
    TooBig,
    /// A NUL octet: receivers that drop NULs would read `<CRLF><NUL>.<CRLF>`
    /// as the end of data, so a relayed NUL is a smuggling vector.
    Nul,
    /// The node's budget for message data held in memory ran out.
    NoResources,
}

/// Accumulates one message's data.
#[derive(Debug)]
pub struct DataReader {
    max_size: usize,
    message: Vec<u8>,
    /// The current, unterminated line.
    partial: Vec<u8>,
    /// The previous line ended with CRLF (DATA's own line did).
    prev_crlf: bool,
    /// The current line was too long and is being skipped.
    skipping: bool,
    fault: Option<DataFault>,
}

/// What [`DataReader::feed`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum DataStatus {
    /// Needs more input.
    More,
    /// The terminator was seen; `rest` octets after it were not consumed.
    Done { consumed: usize },
}

impl DataReader {
    pub fn new(max_size: usize) -> DataReader {
        DataReader { max_size, message: Vec::new(), partial: Vec::new(), prev_crlf: true, skipping: false, fault: None }
    }

    fn flag(&mut self, f: DataFault) {
        // The first fault is the one reported, except that size wins: it
        // tells the client the one thing it can fix by sending less.
        if self.fault.is_none() || (f == DataFault::TooBig && self.fault != Some(DataFault::NoResources)) {
            self.fault = Some(f);
        }
    }

    /// Consumes input up to and including the terminator.
    pub fn feed(&mut self, input: &[u8]) -> DataStatus {
        let mut pos = 0;
        while pos < input.len() {
            let Some(nl) = input[pos..].iter().position(|&b| b == b'\n') else {
                self.take_partial(&input[pos..]);
                return DataStatus::More;
            };
            let chunk = &input[pos..pos + nl + 1];
            pos += nl + 1;
            self.take_partial(&chunk[..chunk.len() - 1]);
            let crlf = self.partial.last() == Some(&b'\r');
            if crlf {
                self.partial.pop();
            } else {
                self.flag(DataFault::BareNewline);
            }
            let line = std::mem::take(&mut self.partial);
            let was_skipping = std::mem::replace(&mut self.skipping, false);
            if crlf && self.prev_crlf && !was_skipping && line == b"." {
                return DataStatus::Done { consumed: pos };
            }
            if line.contains(&b'\r') {
                self.flag(DataFault::BareNewline);
            }
            if line.contains(&0) {
                self.flag(DataFault::Nul);
            }
            let text = line.strip_prefix(b".").unwrap_or(&line);
            if self.message.len() + text.len() + 2 > self.max_size {
                self.flag(DataFault::TooBig);
            } else if !matches!(self.fault, Some(DataFault::TooBig | DataFault::NoResources)) {
                self.message.extend_from_slice(text);
                self.message.extend_from_slice(b"\r\n");
            }
            self.prev_crlf = crlf;
        }
        DataStatus::More
    }

    fn take_partial(&mut self, bytes: &[u8]) {
        if self.skipping {
            // Keep only the last octet: enough to see whether CR ends the line.
            if let Some(&b) = bytes.last() {
                self.partial.clear();
                self.partial.push(b);
            }
            return;
        }
        self.partial.extend_from_slice(bytes);
        // +1 leaves room for a CR that belongs to the CRLF.
        if self.partial.len() > MAX_LINE + 1 {
            self.flag(DataFault::LineTooLong);
            let last = *self.partial.last().expect("not empty");
            self.partial.clear();
            self.partial.push(last);
            self.skipping = true;
        }
    }

    /// Octets of message data held so far.
    pub fn held(&self) -> usize {
        self.message.len() + self.partial.len()
    }

    /// The node cannot hold more data: what was held is dropped, the rest
    /// is read and discarded, and the message is refused at its end.
    pub fn out_of_resources(&mut self) {
        self.fault = Some(DataFault::NoResources);
        self.message = Vec::new();
    }

    /// The message (CRLF line endings, dot-unstuffed) or why it is refused.
    pub fn finish(self) -> Result<Vec<u8>, DataFault> {
        match self.fault {
            Some(f) => Err(f),
            None => Ok(self.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8]) -> (Option<usize>, Result<Vec<u8>, DataFault>) {
        let mut r = DataReader::new(10_000);
        let done = match r.feed(input) {
            DataStatus::Done { consumed } => Some(consumed),
            DataStatus::More => None,
        };
        (done, r.finish())
    }

    #[test]
    fn terminators_and_smuggling() {
        type Case<'a> = (&'a [u8], Option<usize>, Result<&'a [u8], DataFault>);
        let cases: &[Case] = &[
            (b"Hi\r\n.\r\n", Some(7), Ok(b"Hi\r\n")),
            (b".\r\n", Some(3), Ok(b"")),
            (b"..dot\r\n.\r\nMAIL FROM:<x>\r\n", Some(10), Ok(b".dot\r\n")),
            // Not terminators: the data goes on, and the message is refused.
            (b"Hi\n.\r\nMAIL FROM:<x>\r\n", None, Err(DataFault::BareNewline)),
            (b"Hi\r\n.\nMAIL FROM:<x>\r\n", None, Err(DataFault::BareNewline)),
            (b"Hi\n.\nMAIL FROM:<x>\r\n", None, Err(DataFault::BareNewline)),
            (b"Hi\r.\r\nX\r\n", None, Err(DataFault::BareNewline)),
            // The real terminator after smuggling attempts ends one refused message.
            (b"Hi\n.\r\nMAIL FROM:<x>\r\n.\r\n", Some(24), Err(DataFault::BareNewline)),
            (b"a\rb\r\n.\r\n", Some(8), Err(DataFault::BareNewline)),
            (b"no end yet\r\n", None, Ok(b"no end yet\r\n")),
            // A NUL before the dot: receivers that drop NULs end data there.
            (b"Hi\r\n\0.\r\nMAIL FROM:<x>\r\n.\r\n", Some(26), Err(DataFault::Nul)),
            (b"a\0b\r\n.\r\n", Some(8), Err(DataFault::Nul)),
        ];
        for (input, done, want) in cases {
            let (got_done, got) = run(input);
            assert_eq!(got_done, *done, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(got.as_deref().map_err(|e| *e), want.map(|w| w), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn split_input_finds_the_terminator() {
        let msg = b"Subject: x\r\n\r\nbody\r\n.\r\n";
        for split in 0..msg.len() {
            let mut r = DataReader::new(10_000);
            assert_eq!(r.feed(&msg[..split]), DataStatus::More, "split at {split}");
            assert_eq!(r.feed(&msg[split..]), DataStatus::Done { consumed: msg.len() - split });
            assert_eq!(r.finish().unwrap(), b"Subject: x\r\n\r\nbody\r\n");
        }
    }

    #[test]
    fn long_lines_and_size() {
        let mut long = vec![b'a'; MAX_LINE];
        long.extend_from_slice(b"\r\n.\r\n");
        assert!(run(&long).1.is_ok(), "998 octets is allowed");
        let mut longer = vec![b'a'; MAX_LINE + 1];
        longer.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(run(&longer), (Some(MAX_LINE + 6), Err(DataFault::LineTooLong)));
        let mut r = DataReader::new(10);
        assert!(matches!(r.feed(b"0123456789abc\r\n.\r\n"), DataStatus::Done { .. }));
        assert_eq!(r.finish(), Err(DataFault::TooBig));
    }
}

//! The SMTP session state machine, fed arbitrary bytes in arbitrary pieces.
//! Every decision the caller makes is answered (recipients accepted, AUTH
//! granted or not, messages stored), so every state is reachable.
#![no_main]

use imgate::smtp_in::reply::Reply;
use imgate::smtp_in::session::{ListenerKind, Session, SessionConfig, Step};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else { return };
    let cfg = SessionConfig {
        hostname: "mx.fuzz.test".into(),
        kind: if flags & 1 == 0 { ListenerKind::Mx } else { ListenerKind::Submission },
        max_size: 4096,
        max_recipients: 5,
        tls_available: flags & 2 != 0,
        auth_without_tls: flags & 4 != 0,
        max_refused_recipients: 3,
    };
    let (mut session, _greeting) = Session::new(cfg);
    // Split the input where the fuzzer put 0xff bytes: pieces as TCP reads.
    for piece in rest.split(|b| *b == 0xff) {
        session.receive(piece);
        let mut step = session.step();
        for _ in 0..10_000 {
            step = match step {
                Step::NeedInput => break,
                Step::Close(_) => return,
                Step::Reply(_) => session.step(),
                Step::StartTls(_) => {
                    session.tls_started();
                    session.step()
                }
                Step::CheckRecipient(a) => {
                    let relay = flags & 8 != 0;
                    session.recipient_checked(a, Reply::new(250, "2.1.5", "Ok"), relay)
                }
                Step::Authenticate { user, .. } => session.authenticated(user.parse().ok()),
                Step::Message(env, content) => {
                    assert!(!env.recipients.is_empty(), "a message without recipients");
                    assert!(content.len() <= 4096 + 2, "a message over the size limit");
                    session.stored(Reply::new(250, "2.0.0", "Ok"))
                }
            };
        }
    }
});

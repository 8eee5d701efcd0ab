//! What travels over the socket: one request, one response, each a postcard
//! record behind a 4-byte little-endian length.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{CandidateMeta, Cursor, Histogram, Overview, Page, Team};
use crate::features::spectral::BptClass;
use crate::store::{LabelEvent, LineSummary, ObjectKey};
use crate::tui::Ordering;

/// Largest frame accepted (a page of label events can be large, not this).
const MAX_FRAME: u32 = 256 << 20;

/// The wire format's version. postcard records carry no field names, so two
/// builds whose types differ misread each other: bump this whenever a type
/// sent over the socket changes (a test pins the encoding of sample records
/// to this number), and the hello refuses the other build in
/// words instead. It goes last in the hello and the welcome, where a build
/// from before it existed ran out of bytes (2: pages say when they are a
/// trial's interleaving).
pub const PROTOCOL: u32 = 2;

/// Why the two ends of a connection cannot talk, for the person at the
/// refused end: `versions` says which build speaks what.
pub fn other_build(versions: &str) -> String {
    format!(
        "this store is served by another oddity build ({versions}): \
         label with the same oddity as the serving process, or wait until it quits"
    )
}

/// A command run by the serving process for a connected `oddity` command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    Status { files: bool },
    Top { n: usize, tsv: bool },
    Export { format: String, image_ext: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// First on every connection: this client's session, and (after a
    /// take-over) the candidates it had been given.
    Hello {
        session: String,
        claimed: Vec<ObjectKey>,
        protocol: u32,
    },
    Events(Option<u64>),
    Append(Vec<LabelEvent>),
    Overview,
    Page(Ordering, Cursor, usize),
    Meta(ObjectKey),
    ObjectId(ObjectKey),
    FindObject(String),
    Bpt(ObjectKey),
    LineSummary,
    Histogram(usize, Vec<(ObjectKey, bool)>),
    Rank(ObjectKey),
    Claim(Vec<ObjectKey>),
    Team,
    Run(Command),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// Who the server says you are, the team's overlap, and who serves.
    Welcome {
        user: String,
        overlap: f64,
        server: String,
        protocol: u32,
    },
    Refused(String),
    Events(Vec<(u64, LabelEvent)>),
    Ids(Vec<u64>),
    Overview(Overview),
    Page(Page),
    Meta(Option<Box<CandidateMeta>>),
    Text(Option<String>),
    Key(Option<ObjectKey>),
    Bpt(Option<BptClass>),
    LineSummary(Option<Box<LineSummary>>),
    Histogram(Box<Histogram>),
    Rank(Option<u64>),
    Claims(Vec<bool>),
    Team(Option<Team>),
    Output {
        text: String,
        code: i32,
    },
    Error(String),
}

pub fn send<T: Serialize>(w: &mut impl Write, value: &T) -> std::io::Result<()> {
    let bytes = postcard::to_allocvec(value).map_err(std::io::Error::other)?;
    let mut frame = Vec::with_capacity(4 + bytes.len());
    frame.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    frame.extend_from_slice(&bytes);
    w.write_all(&frame)?;
    w.flush()
}

pub fn recv<T: DeserializeOwned>(r: &mut impl Read) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len);
    if len > MAX_FRAME {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("frame of {len} bytes")));
    }
    let mut buf = vec![0u8; len as usize];
    r.read_exact(&mut buf)?;
    postcard::from_bytes(&buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LabelValue;

    /// A record of most request and response kinds, as bytes. Records with
    /// many nested fields (a candidate's meta, the line summary) are left to
    /// the end-to-end sprint tests.
    fn samples() -> Vec<u8> {
        let key = ObjectKey { file: 3, row: 7 };
        let event = LabelEvent {
            object: key,
            value: LabelValue::Relevance(4),
            tags: vec!["ring".into()],
            user: "ann".into(),
            time: "2026-12-02T10:00:00Z".into(),
            session: "s1".into(),
        };
        let requests = vec![
            Request::Hello { session: "s1".into(), claimed: vec![key], protocol: PROTOCOL },
            Request::Events(Some(9)),
            Request::Append(vec![event.clone(), LabelEvent { value: LabelValue::Retract(2), ..event.clone() }]),
            Request::Overview,
            Request::Page(
                Ordering::Random,
                Cursor::Uncertain { low: Some(vec![1]), high: None, low_done: true, high_done: false },
                5,
            ),
            Request::Meta(key),
            Request::FindObject("NGC 4414".into()),
            Request::Histogram(40, vec![(key, true)]),
            Request::Claim(vec![key]),
            Request::Run(Command::Export { format: "csv".into(), image_ext: "png".into() }),
        ];
        let responses = vec![
            Response::Welcome { user: "ann".into(), overlap: 0.1, server: "pid 1".into(), protocol: PROTOCOL },
            Response::Refused("no".into()),
            Response::Events(vec![(1, event)]),
            Response::Overview(Overview { scored: Some(10), images: 12 }),
            Response::Page(Page { keys: vec![key], next: Cursor::Trial(4), interleaved: true }),
            Response::Bpt(Some(BptClass::Composite)),
            Response::Histogram(Box::new(Histogram {
                lo: 0.0,
                hi: 1.0,
                counts: vec![1, 2],
                n: 3,
                marks: vec![(0.5, true)],
            })),
            Response::Rank(Some(123)),
            Response::Claims(vec![true, false]),
            Response::Team(Some(Team { experts: 2, labels: 5, by_user: vec![("ann".into(), 3)] })),
            Response::Output { text: "ok".into(), code: 0 },
            Response::Error("bad".into()),
        ];
        let mut bytes = Vec::new();
        for r in &requests {
            send(&mut bytes, r).unwrap();
        }
        for r in &responses {
            send(&mut bytes, r).unwrap();
        }
        bytes
    }

    #[test]
    fn the_encoding_changes_only_with_the_protocol_number() {
        let hash = crate::shard::sha256_hex(&samples());
        assert_eq!(
            (PROTOCOL, &hash[..16]),
            (2, "6a411c60e83702db"),
            "the socket's records are encoded differently: bump wire::PROTOCOL and pin this hash with it"
        );
    }

    #[test]
    fn the_samples_read_back() {
        let bytes = samples();
        let mut r = &bytes[..];
        for _ in 0..10 {
            recv::<Request>(&mut r).unwrap();
        }
        for _ in 0..12 {
            recv::<Response>(&mut r).unwrap();
        }
        assert!(r.is_empty());
    }
}

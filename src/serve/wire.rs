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
/// sent over the socket changes, and the hello refuses the other build in
/// words instead. It goes last in the hello and the welcome, where a build
/// from before it existed ran out of bytes (2: pages say when they are a
/// trial's interleaving).
pub const PROTOCOL: u32 = 2;

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
